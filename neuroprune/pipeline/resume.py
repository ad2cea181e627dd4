"""Resume: each stage's inputs and their hash; a changed input reruns the stage."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from neuroprune.chip.schema import ChipProfile
from neuroprune.data.split import SPLIT_RULE
from neuroprune.pipeline.config import RunConfig

# ------------------------------------------------------------------------------------------
# Resume: each stage's inputs

DENSE_INPUTS = (
    "model",
    "hidden",
    "neuron",
    "dataset",
    "data_dir",
    "epochs",
    "timesteps",
    "encoding",
    "event_binning",
    "event_downsample",
    "event_polarity",
    "event_window",
    "batch_size",
    "lr",
    "optimizer",
    "seed",
    "nproc",
    "from_nir",
    "nir_dt",
    "train_dense",
)
PRUNE_INPUTS = (
    "chips",
    "cores",
    "budget",
    "sparsity",
    "method",
    "scheduler",
    "prune_epochs",
    "finetune_epochs",
)
QUANT_INPUTS = ("quant_epochs",)


def stage_inputs(
    cfg: RunConfig, profile: ChipProfile, stage: str, budget: Any | None = None
) -> dict[str, Any]:
    """The options (and chip profile hash) a stage's artifact depends on; a stage depends on
    everything its earlier stages depend on. Every stage depends on the validation rule
    (``validation``: :data:`neuroprune.data.split.SPLIT_RULE`): with the dataset and seed it
    fixes the rows no stage trains on, so an artifact trained under another cut is not reused.

    ``budget`` (the run's :class:`neuroprune.fit.budget.Budget`): where it prunes layers into
    core blocks, the pruned and quantized stages also depend on them (``core_blocks``, one line
    per layer), so a model pruned with the readout block that ``fit`` chose on validation is
    not reused by a ``--resume`` that prunes the ordinary way (and the other way round)."""
    keys = DENSE_INPUTS
    if stage in ("pruned", "quantized"):
        keys += PRUNE_INPUTS
    if stage == "quantized":
        keys += QUANT_INPUTS
    values = cfg.as_dict()
    inputs = {key: values[key] for key in keys}
    inputs["validation"] = SPLIT_RULE
    if stage != "dense":
        inputs["chip"] = profile.id
        inputs["profile_sha256"] = profile.sha256
        blocks = getattr(budget, "input_blocks", None) or {}
        if blocks:
            inputs["core_blocks"] = [blocks[name].describe(name) for name in sorted(blocks)]
    return inputs


def input_hash(inputs: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``inputs`` (16 hex digits)."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_inputs(saved: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """``["hidden (128 -> 32)", ...]``: options that differ between ``saved`` and ``now``."""
    if not isinstance(saved, Mapping):
        return ["(no record of the options it was made with)"]
    keys = sorted(set(saved) | set(now))
    return [f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in keys if saved.get(k) != now.get(k)]
