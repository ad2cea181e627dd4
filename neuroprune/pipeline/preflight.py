"""Everything checked before training: profile, data, model size, method, device, budget."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from neuroprune.chip.arithmetic import get_arithmetic
from neuroprune.chip.profiles import load_profile
from neuroprune.chip.schema import ChipProfile
from neuroprune.core.errors import (
    ConfigError,
    UnsupportedError,
)
from neuroprune.data.dataset import Dataset
from neuroprune.data.datasets import load_dataset
from neuroprune.data.spikecam import DETECTION_DATASETS
from neuroprune.data.split import Holdout, hold_out
from neuroprune.graph.neurons import with_decay_input
from neuroprune.graph.read import read_network
from neuroprune.graph.stages import NirNetwork
from neuroprune.models.registry import AUTO_NEURON, NEURON_MODELS
from neuroprune.pipeline.config import NO_SIMULATION, RunConfig, event_options
from neuroprune.pipeline.context import with_model_defaults
from neuroprune.pipeline.deploy import DEPLOY_FORMATS, check_deploy_format
from neuroprune.pruning.registry import MethodEntry, method_entry
from neuroprune.sim.backends import get_backend


@dataclass(frozen=True)
class _Plan:
    """Everything checked before the run directory is touched."""

    cfg: RunConfig
    profile: ChipProfile
    dataset: Any
    holdout: Holdout  # the validation cut, made once here, before any training
    model: Any
    budget: Any
    dense_synapses: int
    dense_neurons: int
    dense_cores: int  # cores the dense network uses in the allocation
    cores_allocated: int


def _preflight(cfg: RunConfig) -> _Plan:
    """Validate every input and build the dense model; nothing is written.

    The order descends through the layers: the options resolved against the registries
    (device, simulator backend and whether it can run here, pruning method, allocation); the
    files (chip profile, NIR graph, dataset); the configuration the run keeps (the graph's time
    steps, the model's defaults); the validation cut (:func:`neuroprune.data.split.hold_out`,
    seeded by ``--seed``); the dense model (torch only now that the inputs are valid), its
    summary and the budget."""
    from neuroprune.fit.allocation import (  # deferred: imports scipy
        Allocation,
        allocation_budget,
        dense_cores,
    )
    from neuroprune.fit.rules import check_allocation  # deferred: imports scipy

    _check_device(cfg.device)
    check_detection_not_fitted(cfg)
    if cfg.backend in DEPLOY_FORMATS:  # netx/pynn run one chip's artifact: a usage error first
        chip = load_profile(cfg.chip)
        check_deploy_format(cfg.backend, chip.neuron.arithmetic, chip.id, "fit", "backend")
    check_backend(cfg.backend)
    method = method_entry(cfg.method)
    allocation = Allocation(cfg.chips, cfg.cores, cfg.budget, cfg.sparsity)
    events = event_options(cfg)
    profile = load_profile(cfg.chip)
    check_allocation(profile, chips=cfg.chips, cores=cfg.cores)
    # --from FILE.nir: the file's stages, every LIF in the model convention's decay_input form
    network = with_decay_input(read_network(cfg.from_nir, dt=cfg.nir_dt)) if cfg.from_nir else None
    dataset = load_dataset(cfg.dataset, cfg.data_dir, events)
    check_model_size(cfg.model, cfg.hidden, dataset.input_shape, dataset.num_classes)
    if network is not None:
        cfg = cfg.replace(timesteps=cfg.timesteps or network.timesteps)
    cfg = with_model_defaults(cfg)
    model = _dense_model(cfg, network, dataset)
    _check_method_takes(method, model, cfg)
    check_arithmetic_models(model, profile)
    check_spike_input(cfg.encoding, profile)
    from neuroprune.models import summarize  # deferred: imports scipy, spikingjelly, torch

    summary = summarize(model, dataset.input_shape, cfg.timesteps, name=cfg.model)
    check_neuron_models(summary, profile, cfg)
    budget = with_params(allocation_budget(summary, profile, allocation), cfg.params)
    used, allocated = dense_cores(summary, profile, allocation)
    shared = profile.conv_weight_sharing
    return _Plan(
        cfg,
        profile,
        dataset,
        hold_out(dataset, seed=cfg.seed),  # before any training: no stage trains on it
        model,
        budget,
        summary.synapses(shared),
        summary.neurons,
        dense_cores=used,
        cores_allocated=allocated,
    )


def _dense_model(cfg: RunConfig, network: NirNetwork | None, dataset: Dataset):
    """The model the run starts from: ``network`` (``--from FILE.nir``) for ``dataset``, or the
    model the config names (:func:`configured_model`)."""
    if network is not None:
        from neuroprune.models.nir_model import (
            nir_model_for,  # deferred: imports scipy, spikingjelly, torch
        )

        imported = nir_model_for(
            network,
            cfg.from_nir,
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
        )
        return imported.model.train()
    from neuroprune.models.zoo import build_model  # deferred: imports scipy, spikingjelly, torch

    return build_model(
        cfg.model,
        dataset.input_shape,
        dataset.num_classes,
        hidden=cfg.hidden,
        neuron=cfg.neuron,
        seed=cfg.seed,
    )


def check_arithmetic_models(model, profile: ChipProfile) -> None:
    """A chip that declares its neuron arithmetic trains its quantized model with it: every
    neuron of ``model`` must be a model that arithmetic maps (e.g. SpiNNaker's LIF has no IF),
    checked before training instead of failing at quantization."""
    name = profile.neuron.arithmetic
    if name is None:
        return
    from spikingjelly.activation_based import neuron  # deferred: imports torch

    supported = get_arithmetic(name).models
    kinds = {
        "IF" if isinstance(m, neuron.IFNode) else "LIF"
        for m in model.modules()
        if isinstance(m, neuron.BaseNode)
    }
    for kind in sorted(kinds - set(supported)):
        raise UnsupportedError(
            f"{profile.name}'s neuron arithmetic {name} has no {kind} neuron",
            where=f"chip {profile.id}",
            field="neuron",
            value=kind.lower(),
            fix=f"Use --neuron {supported[0].lower()}.",
        )


def check_spike_input(encoding: str | None, profile: ChipProfile) -> None:
    """A chip whose arithmetic takes spike input only (Speck: events, no host-injected analog
    first layer) refuses the ``direct`` encoding before training."""
    name = profile.neuron.arithmetic
    if name is None or get_arithmetic(name).analog_input or encoding != "direct":
        return
    raise UnsupportedError(
        f"{profile.name} takes spike events only: with direct encoding the first layer would "
        "take analog pixels computed on the host",
        where=f"chip {profile.id}",
        field="encoding",
        value=encoding,
        fix="Use --encoding latency or --encoding poisson (the first layer then runs on the chip).",
    )


def check_neuron_models(summary, profile: ChipProfile, cfg: RunConfig) -> None:
    """Every neuron of the network is a model the chip runs (``neuron.models``), refused before
    training as ``neuroprune check`` reports it (Speck runs IF neurons only)."""
    from neuroprune.fit.rules import foreign_neuron_layers  # deferred: imports scipy

    foreign = foreign_neuron_layers(summary, profile)
    if not foreign:
        return
    models = ", ".join(profile.neuron.models)
    built = [m.lower() for m in profile.neuron.models if m.lower() in NEURON_MODELS]
    fix = (
        f"Use --neuron {built[0]}."
        if built and not cfg.from_nir
        else f"Give a network of {models} neurons."
    )
    raise UnsupportedError(
        f"{profile.name} runs {models} neurons only; {len(foreign)} layer(s) have "
        f"{foreign[0].neuron_model} neurons (first: {foreign[0].name})",
        where=f"chip {profile.id}",
        field="neuron",
        value=foreign[0].neuron_model.lower(),
        fix=fix,
    )


def _check_method_takes(method: MethodEntry, model, cfg: RunConfig) -> None:
    """A method that is not structured needs a Sequential chain (or a wired SEW-ResNet)."""
    from neuroprune.models.reader import CHAIN, WIRED, model_kind  # deferred: imports torch

    if model_kind(model) not in (CHAIN, WIRED) and not method.structured:
        raise UnsupportedError(
            f"method {cfg.method!r} needs a Sequential chain model",
            where="--method",
            field="model",
            value=cfg.model,
            fix="Use --method sca with --model sew.",
        )


def configured_model(cfg: RunConfig, input_shape, num_classes: int):
    """The dense model a run config names (``model``, ``hidden``, ``neuron``, ``seed``); with
    ``neuron: auto`` the default neuron's (its layers and synapses, what a budget reads, are the
    same for every candidate; ``fit`` builds each candidate itself)."""
    from neuroprune.models.zoo import build_model  # deferred: imports scipy, spikingjelly, torch

    neuron = next(iter(NEURON_MODELS)) if cfg.neuron == AUTO_NEURON else cfg.neuron
    return build_model(
        cfg.model, input_shape, num_classes, hidden=cfg.hidden, neuron=neuron, seed=cfg.seed
    )


def configured_budget(cfg: RunConfig, profile: ChipProfile, summary):
    """The synapse budget a run config asks of ``profile`` for the network ``summary``
    (``chips``, ``cores``, ``budget``, ``sparsity``; :func:`neuroprune.fit.budget.derive_budget`).
    Raises the budget's one-line errors when no budget can make the network fit."""
    from neuroprune.fit.allocation import Allocation, allocation_budget  # deferred: imports scipy

    allocation = Allocation(cfg.chips, cfg.cores, cfg.budget, cfg.sparsity)
    return allocation_budget(summary, profile, allocation)


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


def with_params(budget, params: float | None):
    """``budget`` lowered to ``floor(params * dense synapses)`` (``--params``, a fraction of
    the dense network kept) when that is smaller: the smallest budget wins."""
    if params is None or budget.dense_synapses is None:
        return budget
    kept = max(1, math.floor(params * budget.dense_synapses))
    if kept >= budget.synapses:
        return budget
    return dataclasses.replace(
        budget, synapses=kept, source=f"--params {params:g}", binding="params"
    )


def check_detection_not_fitted(cfg: RunConfig) -> None:
    """The classifier stages do not take the detector: a detection run is fitted by
    :mod:`neuroprune.pipeline.detect_fit` only (``neuroprune fit``); a run derived from another
    run's models (``neuroprune quantize RUN``) is refused in one line."""
    field, value = None, None
    if cfg.model == "detector":
        field, value = "model", cfg.model
    elif cfg.dataset in DETECTION_DATASETS:
        field, value = "dataset", cfg.dataset
    if field is not None:
        raise UnsupportedError(
            "a detection run is not derived from another run's models",
            where="config",
            field=field,
            value=value,
            fix="Rerun 'neuroprune fit --model detector' with the new options.",
        )


def check_backend(backend: str) -> None:
    """The simulator can run on this machine, asked before anything is trained or written
    (``--backend lava`` needs its Python 3.10 environment; ``BackendUnavailableError``, exit
    code 3, says how to install it). ``--backend none`` simulates nothing."""
    if backend != NO_SIMULATION:
        get_backend(backend).check_available()


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
