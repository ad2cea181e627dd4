"""Everything checked before training: profile, data, model size, method, device, budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from neuroprune.chip.profiles import load_profile
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import (
    ConfigError,
    UnsupportedError,
)
from neuroprune.data.datasets import load_dataset
from neuroprune.pipeline.config import RunConfig, event_options
from neuroprune.pipeline.context import with_model_defaults
from neuroprune.pruning.registry import method_entry


@dataclass(frozen=True)
class _Plan:
    """Everything checked before the run directory is touched."""

    cfg: RunConfig
    profile: ChipProfile
    dataset: Any
    model: Any
    budget: Any
    dense_synapses: int
    dense_neurons: int


def _preflight(cfg: RunConfig) -> _Plan:
    """Validate every input (profile, data, model, options against the registries, device,
    budget) and build the dense model; nothing is written."""

    _check_device(cfg.device)
    options = event_options(cfg)
    profile = load_profile(cfg.chip)
    dataset = load_dataset(cfg.dataset, cfg.data_dir, options)
    check_model_size(cfg.model, cfg.hidden, dataset.input_shape, dataset.num_classes)
    # torch only once the inputs are valid
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch
    from neuroprune.models.reader import CHAIN, WIRED, model_kind  # deferred: imports torch

    if cfg.from_nir:
        imported = _nir_model(cfg.from_nir, dataset, cfg.nir_dt)
        cfg = cfg.replace(timesteps=cfg.timesteps or imported.timesteps)
        model = imported.model.train()
    cfg = with_model_defaults(cfg)
    if not cfg.from_nir:
        model = configured_model(cfg, dataset.input_shape, dataset.num_classes)
    chain_or_wired = model_kind(model) in (CHAIN, WIRED)
    if not chain_or_wired and not method_entry(cfg.method).structured:
        raise UnsupportedError(
            f"method {cfg.method!r} needs a Sequential chain model",
            where="--method",
            field="model",
            value=cfg.model,
            fix="Use --method sca with --model sew.",
        )
    summary = summarize(model, dataset.input_shape, cfg.timesteps, name=cfg.model)
    budget = configured_budget(cfg, profile, summary)
    shared = profile.conv_weight_sharing
    return _Plan(cfg, profile, dataset, model, budget, summary.synapses(shared), summary.neurons)


def configured_model(cfg: RunConfig, input_shape, num_classes: int):
    """The dense model a run config names (``model``, ``hidden``, ``neuron``, ``seed``)."""
    from neuroprune.models.zoo import build_model  # deferred: imports scipy, spikingjelly, torch

    return build_model(
        cfg.model, input_shape, num_classes, hidden=cfg.hidden, neuron=cfg.neuron, seed=cfg.seed
    )


def configured_budget(cfg: RunConfig, profile: ChipProfile, summary):
    """The synapse budget a run config asks of ``profile`` for the network ``summary``
    (``chips``, ``cores``, ``budget``, ``sparsity``; :func:`neuroprune.fit.budget.derive_budget`).
    Raises the budget's one-line errors when no budget can make the network fit."""
    from neuroprune.fit.allocation import allocation_capacity  # deferred: imports scipy
    from neuroprune.fit.budget import derive_budget  # deferred: imports scipy

    capacity = allocation_capacity(summary, profile, chips=cfg.chips, cores=cfg.cores)
    return derive_budget(
        profile,
        summary,
        chips=cfg.chips,
        cores=cfg.cores,
        budget=cfg.budget,
        sparsity=cfg.sparsity,
        capacity=capacity,
    )


MAX_DENSE_WEIGHTS = 200_000_000  # 0.8 GB of float32 weights, several times that to train


def check_model_size(model: str, hidden, input_shape, num_classes: int) -> None:
    """Refuse an mlp whose weights alone would not fit in memory, before building it."""
    if model != "mlp" or not hidden:
        return
    sizes = [math.prod(int(s) for s in input_shape), *hidden, int(num_classes)]
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    if weights > MAX_DENSE_WEIGHTS:
        raise ConfigError(
            f"the dense mlp would have {weights:,} weights (limit {MAX_DENSE_WEIGHTS:,})",
            where="config",
            field="hidden",
            value=",".join(map(str, hidden)),
            fix="Use narrower hidden layers.",
        )


def _check_device(device: str) -> None:
    """``--device cuda`` needs a CUDA device (torch is imported only to ask)."""
    if device != "cuda":
        return
    import torch  # deferred: imports torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "no CUDA device is available on this machine",
            where="config",
            field="device",
            value=device,
            fix="Use --device cpu.",
        )


def _nir_model(path, dataset, dt):
    """``--from FILE.nir``: the graph as a SpikingJelly model for ``dataset``."""
    from neuroprune.models.nir_model import (
        load_nir_model,  # deferred: imports scipy, spikingjelly, torch
    )

    return load_nir_model(
        path, input_shape=dataset.input_shape, num_classes=dataset.num_classes, dt=dt
    )
