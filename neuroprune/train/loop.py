"""Training, evaluation and checkpoints (layer L4).

Training uses surrogate gradients through time (BPTT over the ``T`` steps). Per batch:
encode the images as ``[T, B, C, H, W]``, run the model, take the output spikes
``S[t, b, k]`` and their rate ``r[b, k] = (1/T) * sum_t S[t, b, k]`` (spikes per step), then

* ``loss="ce"``: ``cross_entropy(T * r, y)``, i.e. the spike *counts* used as logits;
* ``loss="mse"``: ``mean((r - onehot(y))**2)`` (target rate 1 for the label, 0 otherwise).

Callbacks may add a regulariser, edit gradients and act after each optimizer step
(:class:`Callback`); neuron states are reset after every batch. The learning rate is set at the
start of each epoch ``e`` (0-based, ``E`` epochs): ``cosine``: ``lr * (1 + cos(pi*e/E)) / 2``;
``step``: ``lr * 0.1**k`` with ``k`` the number of milestones ``E/2, 3E/4`` reached;
``none``: constant.

Determinism: with the same seed, data and ``device="cpu"`` two runs give identical weights.
Shuffling uses ``numpy.random.default_rng([seed, epoch])`` and Poisson encoding a torch
generator seeded from ``(seed, epoch)``, so resuming at epoch ``e`` replays the same batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional

from neuroprune.core.errors import ArtifactError, ConfigError, ModelError
from neuroprune.core.progress import Progress, emit
from neuroprune.data.encoding import ENCODINGS
from neuroprune.models.encoding import encode, make_generator
from neuroprune.models.layout import channels_last_sequence, tag_channels_last
from neuroprune.train import distributed
from neuroprune.train.optimizers import EagerAdam, EagerSGD

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "step", "none")
LOSSES = ("ce", "mse")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters. Defaults are the measured ``mlp``-on-digits defaults.

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per optimizer step.
        lr: base learning rate (per step, optimizer units).
        optimizer: ``"adam"`` or ``"sgd"`` (``momentum`` applies to SGD only).
        weight_decay: L2 coefficient passed to the optimizer.
        lr_schedule: ``"cosine"``, ``"step"`` or ``"none"`` (module docstring).
        timesteps: simulation steps ``T`` per sample.
        encoding: ``"direct"`` (analog input every step) or ``"poisson"`` (rate-coded spikes).
        seed: seeds shuffling, Poisson encoding and torch's RNG during training.
        device: ``"cpu"`` or ``"cuda"``.
        loss: ``"ce"`` (cross-entropy on spike counts) or ``"mse"`` (on rates vs one-hot).
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.02
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    timesteps: int = 8
    encoding: str = "direct"
    seed: int = 0
    device: str = "cpu"
    loss: str = "ce"

    def __post_init__(self) -> None:
        choices = {
            "optimizer": OPTIMIZERS,
            "lr_schedule": SCHEDULES,
            "loss": LOSSES,
            "device": DEVICES,
            "encoding": ENCODINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                _config_error(name, getattr(self, name), f"Use one of: {', '.join(allowed)}.")
        for name in ("epochs", "batch_size", "timesteps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                _config_error(name, getattr(self, name), "Use a positive integer.")
        if not self.lr > 0:
            _config_error("lr", self.lr, "Use a learning rate > 0.")
        for name in ("weight_decay", "momentum"):
            if not getattr(self, name) >= 0:
                _config_error(name, getattr(self, name), "Use a value >= 0.")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)


def _config_error(field_name: str, value: object, fix: str) -> None:
    raise ConfigError(
        "invalid training option", where="train", field=field_name, value=value, fix=fix
    )


# Measured defaults per built-in model on digits, seeds 0-2, one CPU thread:
# mlp 64-128-10: 97.8-98.3 % test accuracy, ~0.19 s/epoch (~4-5 s total);
# conv 8-16 (strided) -> 10: 97.5-98.3 %, ~0.6 s/epoch (~6 s total).
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "mlp": {"epochs": 20, "lr": 0.02, "batch_size": 32, "timesteps": 8},
    "conv": {"epochs": 10, "lr": 0.01, "batch_size": 32, "timesteps": 8},
    "sew": {"epochs": 10, "lr": 0.01, "batch_size": 32, "timesteps": 8},
    "vgg": {"epochs": 10, "lr": 0.01, "batch_size": 32, "timesteps": 8},  # conv's, untuned
    # train.detect.DetectTrainConfig's (Adam): spikecam-digits scenes, T = 8 frames
    "detector": {"epochs": 10, "lr": 3e-3, "batch_size": 32, "timesteps": 8},
}


def default_config(model: str = "mlp", **overrides: Any) -> TrainConfig:
    """:class:`TrainConfig` with the measured defaults of ``model`` (user models: mlp's)."""
    return TrainConfig(**{**DEFAULTS.get(model, {}), **overrides})


@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        history: one dict per epoch run: ``epoch`` (1-based), ``loss`` (mean over batches),
            ``train_accuracy`` (running, train mode), ``test_accuracy``, ``lr``, ``seconds``,
            plus whatever callbacks returned from ``on_epoch_end``.
        test_accuracy: final test accuracy (0..1).
        seconds: wall-clock training time.
        optimizer_state: the optimizer's ``state_dict()`` at the end (for checkpoints).
    """

    history: tuple[dict[str, Any], ...]
    test_accuracy: float
    seconds: float
    optimizer_state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------------------------
# Callbacks


class TrainCallback(Protocol):
    """What :func:`train` calls; every method is optional (see :class:`Callback`)."""

    def on_train_begin(self, model, optimizer, steps_per_epoch: int, epochs: int) -> None: ...

    def regularize(self, loss: torch.Tensor) -> torch.Tensor: ...

    def before_step(self) -> None: ...

    def after_step(self, iteration: int, lr: float) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> Mapping[str, Any]: ...


class Callback:
    """No-op base for :class:`TrainCallback`: override only what you need.

    Order per batch: ``loss = regularize(loss)`` -> backward -> ``before_step()`` (edit
    gradients) -> ``optimizer.step()`` -> ``after_step(iteration, lr)`` (``iteration`` is the
    global 0-based step, ``epoch * steps_per_epoch + step``). ``on_epoch_end(epoch, metrics)``
    gets the 1-based epoch and returns extra metrics to log (e.g. sparsity).
    """

    def on_train_begin(self, model, optimizer, steps_per_epoch: int, epochs: int) -> None:
        return None

    def regularize(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def before_step(self) -> None:
        return None

    def after_step(self, iteration: int, lr: float) -> None:
        return None

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}


def _call(callbacks: Sequence[Any], method: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(*args)


def _regularize(callbacks: Sequence[Any], loss: torch.Tensor) -> torch.Tensor:
    for cb in callbacks:
        fn = getattr(cb, "regularize", None)
        if fn is not None:
            loss = fn(loss)
    return loss


def _epoch_extras(callbacks: Sequence[Any], epoch: int, metrics: dict[str, Any]) -> dict:
    for cb in callbacks:
        fn = getattr(cb, "on_epoch_end", None)
        extra = fn(epoch, dict(metrics)) if fn is not None else None
        metrics.update(extra or {})
    return metrics


# --------------------------------------------------------------------------------------------
# Training


def resolve_device(name: str) -> torch.device:
    """``torch.device`` for ``"cpu"``/``"cuda"``; :class:`ModelError` if CUDA is unavailable."""
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(
                "CUDA is not available on this machine",
                where="train",
                field="device",
                value=name,
                fix="Use --device cpu, or install a CUDA build of torch with a working GPU driver.",
            )
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return torch.device("cuda")
    if name != "cpu":
        _config_error("device", name, f"Use one of: {', '.join(DEVICES)}.")
    return torch.device("cpu")


DEBUG_MODE_WARN = 1  # torch.set_deterministic_debug_mode: 0 off, 1 warn, 2 error


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch and switch on deterministic algorithms (warn-only); restore both on exit.

    ``torch.set_deterministic_debug_mode(1)`` sets the same flag as
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` without importing
    ``torch._inductor`` (about 1.2 s and 0.16 GB at start-up), which the latter does only to
    set ``inductor.config.deterministic``; neuroprune never compiles with inductor.
    """
    previous = torch.get_deterministic_debug_mode()
    torch.set_deterministic_debug_mode(DEBUG_MODE_WARN)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_deterministic_debug_mode(previous)


def lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch`` under ``config.lr_schedule`` (module docstring)."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    if config.lr_schedule == "step":
        drops = int(epoch >= 0.5 * config.epochs) + int(epoch >= 0.75 * config.epochs)
        return config.lr * 0.1**drops
    return config.lr


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD (with ``momentum``) over the model's parameters: torch's own, less the
    ``torch._dynamo`` import (:mod:`neuroprune.train.optimizers`, same numbers)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return EagerSGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return EagerAdam(params, lr=config.lr, weight_decay=config.weight_decay)


def spike_loss(spikes: torch.Tensor, labels: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Loss of output spikes ``[T, B, K]`` against labels ``[B]`` (module docstring)."""
    rate = spikes.mean(0)
    if kind == "mse":
        return F.mse_loss(rate, F.one_hot(labels, rate.shape[1]).to(rate.dtype))
    return F.cross_entropy(rate * spikes.shape[0], labels)


def train(
    model: torch.nn.Module,
    dataset: Any,
    config: TrainConfig,
    *,
    callbacks: Sequence[Any] = (),
    progress: Progress | None = None,
    start_epoch: int = 0,
    optimizer_state: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``dataset`` (a :class:`neuroprune.data.dataset.Dataset`).

    ``start_epoch`` is the number of epochs already done (resume from a checkpoint together
    with its ``optimizer_state``). ``progress(event)`` receives ``{"event": "train_begin" |
    "batch" | "epoch", ...}`` dicts. Returns the per-epoch history and final test accuracy.
    """
    device = resolve_device(config.device)
    started = time.perf_counter()
    with deterministic(config.seed):
        place_model(model, device)
        net = distributed.wrap(model)  # DDP under torchrun: rank 0's weights, averaged grads
        optimizer = make_optimizer(model, config)
        if optimizer_state is not None:
            _load_optimizer_state(optimizer, optimizer_state)
        data = _tensors(dataset, device)
        steps = distributed.steps_per_epoch(len(data[1]), config.batch_size)
        _call(callbacks, "on_train_begin", model, optimizer, steps, config.epochs)
        emit(
            progress,
            event="train_begin",
            epochs=config.epochs,
            steps_per_epoch=steps,
            start_epoch=start_epoch,
        )
        history = []
        for epoch in range(start_epoch, config.epochs):
            metrics = _run_epoch(net, optimizer, data, config, epoch, callbacks, progress)
            metrics = _epoch_extras(callbacks, epoch + 1, metrics)
            history.append(metrics)
            emit(progress, event="epoch", **metrics)
    final = history[-1]["test_accuracy"] if history else _test_accuracy(model, data, config)
    return TrainResult(
        history=tuple(history),
        test_accuracy=float(final),
        seconds=time.perf_counter() - started,
        optimizer_state=optimizer.state_dict(),
    )


def place_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device`` (in place); on the CPU its convolutions then run on
    channels-last activations (:func:`neuroprune.models.layout.tag_channels_last`, with the
    channels-last batches of :func:`model_input`). Returns ``model``."""
    model.to(device)
    return tag_channels_last(model) if device.type == "cpu" else model


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    try:
        optimizer.load_state_dict(dict(state))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ArtifactError(
            f"optimizer state does not match this model/optimizer: {exc}",
            where="resume",
            field="optimizer_state",
            value=type(state).__name__,
            fix="Resume with the same model and optimizer options, or start without --resume.",
        ) from exc


def _tensors(dataset: Any, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(
        torch.as_tensor(np.asarray(a)).to(device)
        for a in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    )


def _run_epoch(model, optimizer, data, config, epoch, callbacks, progress) -> dict[str, Any]:
    """One pass over the shuffled training set (this rank's share of it under torchrun);
    returns the epoch's metrics (loss and train accuracy summed over ranks)."""
    x_train, y_train = data[0], data[1]
    t0 = time.perf_counter()
    lr = lr_at(config, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    order = _epoch_order(len(y_train), config.seed, epoch)
    generator = _epoch_generator(config, epoch, x_train.device)
    batch = distributed.local_batch(config.batch_size)
    steps = math.ceil(len(order) / batch)
    model.train()
    total_loss, correct = 0.0, 0
    for step in range(steps):
        idx = torch.as_tensor(order[step * batch : (step + 1) * batch])
        idx = idx.to(x_train.device)
        loss, hits = _train_step(
            model, optimizer, x_train[idx], y_train[idx], config, generator, callbacks
        )
        total_loss += loss * len(idx)
        correct += hits
        _call(callbacks, "after_step", epoch * steps + step, lr)
        emit(
            progress,
            event="batch",
            epoch=epoch + 1,
            epochs=config.epochs,
            step=step + 1,
            steps=steps,
            loss=loss,
        )
    seen, total_loss, correct = distributed.sum_across([len(order), total_loss, correct])
    return {
        "epoch": epoch + 1,
        "loss": total_loss / seen,
        "train_accuracy": correct / seen,
        "test_accuracy": _test_accuracy(distributed.unwrap(model), data, config),
        "lr": lr,
        "seconds": time.perf_counter() - t0,
    }


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Sample positions of ``epoch``: a permutation seeded by ``(seed, epoch)``; under torchrun
    this rank's ``DistributedSampler`` share instead (:func:`neuroprune.train.distributed.epoch_order`)."""
    shard = distributed.epoch_order(n, seed, epoch)
    if shard is not None:
        return np.asarray(shard, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n)


def _epoch_generator(config: TrainConfig, epoch: int, device) -> torch.Generator | None:
    if config.encoding != "poisson":
        return None
    seed = int(np.random.default_rng([config.seed, epoch, 1]).integers(2**62))
    return make_generator(seed, device)


def _train_step(model, optimizer, xb, yb, config, generator, callbacks) -> tuple[float, int]:
    """Forward, loss, backward, step, reset; returns ``(loss, correct predictions)``."""
    spikes = model(model_input(xb, config.timesteps, config.encoding, generator))
    loss = _regularize(callbacks, spike_loss(spikes, yb, config.loss))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _call(callbacks, "before_step")
    optimizer.step()
    functional.reset_net(model)
    hits = int((spikes.detach().sum(0).argmax(1) == yb).sum())
    return float(loss.detach()), hits


def model_input(
    xb: torch.Tensor, timesteps: int, encoding: str, generator: torch.Generator | None
) -> torch.Tensor:
    """The encoded batch ``[T, B, ...]`` a model reads; on the CPU, image batches are stored
    channels-last (:func:`neuroprune.models.layout.channels_last_sequence`: same values, faster
    convolutions)."""
    x = encode(xb, timesteps, encoding, generator=generator)
    return channels_last_sequence(x) if x.device.type == "cpu" else x


def _test_accuracy(model, data, config: TrainConfig) -> float:
    return evaluate(model, data[2], data[3], config.timesteps, config.encoding, seed=config.seed)


# --------------------------------------------------------------------------------------------
# Inference


def predict(
    model: torch.nn.Module,
    x: np.ndarray | torch.Tensor,
    timesteps: int,
    encoding: str = "direct",
    batch_size: int = 256,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes ``(N,)`` and output spike counts ``(N, K)`` (both int64, numpy).

    Runs in eval mode without gradients on the model's device and restores the mode. The
    prediction is ``argmax`` of the counts; ties go to the lowest class index.
    """
    device = _model_device(model)
    x = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    x = x.to(device=device, dtype=torch.float32)
    generator = make_generator(seed, device) if encoding == "poisson" else None
    was_training = model.training
    model.eval()
    counts = []
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = model_input(x[start : start + batch_size], timesteps, encoding, generator)
                counts.append(model(xb).sum(0).round().to(torch.int64).cpu())
                functional.reset_net(model)
    finally:
        functional.reset_net(model)
        model.train(was_training)
    total = torch.cat(counts).numpy() if counts else np.zeros((0, 0), np.int64)
    return np.argmax(total, axis=1).astype(np.int64), total


def evaluate(
    model: torch.nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    timesteps: int,
    encoding: str = "direct",
    batch_size: int = 256,
    *,
    seed: int = 0,
) -> float:
    """Accuracy (0..1) of :func:`predict` against labels ``y``."""
    predictions, _ = predict(model, x, timesteps, encoding, batch_size, seed=seed)
    labels = y.cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
    return float(np.mean(predictions == labels)) if len(labels) else 0.0


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
