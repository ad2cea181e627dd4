"""Plots for people (layer L7). matplotlib is imported here only, with the Agg backend.

Each function takes plain dicts/lists or typed rows (from report.json, :mod:`neuroprune.run.record`)
and writes one PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neuroprune.core.atomic import atomic_path
from neuroprune.run.record import LayerRow, SimLayerRow


def _pyplot():
    import matplotlib  # deferred: imports matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: imports matplotlib

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    return path


def training_curves(history: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """Per epoch, for each stage (dense, prune, finetune, quantize): test accuracy; sparsity and
    the method's knob (threshold d, alpha, ...) during pruning."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    offset = 0
    for k, (stage, rows) in enumerate(history.items()):
        if not rows:
            continue
        style = {"marker": "o", "ms": 3, "label": stage, "color": f"C{k}"}  # one colour a stage
        epochs = [offset + i + 1 for i in range(len(rows))]
        acc = [r.get("test_accuracy") for r in rows]
        axes[0].plot(epochs, [a * 100 if a is not None else None for a in acc], **style)
        if any("sparsity" in r for r in rows):
            axes[1].plot(epochs, [100 * r.get("sparsity", 0) for r in rows], **style)
        if any("knob" in r for r in rows):
            axes[2].plot(epochs, [r.get("knob") for r in rows], **style)
        offset = epochs[-1]
    for ax, title, ylabel in zip(
        axes,
        ("Test accuracy", "Sparsity of counted synapses", "Pruning knob (threshold / alpha)"),
        ("%", "%", "value"),
        strict=True,
    ):
        ax.set_title(title)
        ax.set_xlabel("epoch (all stages)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, path)


def layer_sparsity(layers: Sequence[LayerRow], path: Path) -> Path:
    """Bar chart: kept vs dense synapses per layer, sparsity on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(layers)), 3.4))
    names = [r.layer for r in layers]
    ax.bar(names, [r.dense for r in layers], color="#d0d0d0", label="dense positions")
    ax.bar(names, [r.synapses for r in layers], color="#2a7ab9", label="kept synapses")
    for i, r in enumerate(layers):
        ax.annotate(f"{100 * r.sparsity:.1f} %", (i, r.dense), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("synapses (log)")
    ax.set_title("Per-layer synapses after pruning")
    ax.legend(fontsize=8)
    return _save(fig, path)


def spike_rates(layers: Sequence[SimLayerRow], path: Path) -> Path:
    """Spikes per neuron per step, per layer (from the simulation)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(layers)), 3.2))
    ax.bar([r.layer for r in layers], [r.rate or 0 for r in layers], color="#c0504d")
    ax.set_ylabel("spikes / neuron / step")
    ax.set_title("Spike rates (simulated)")
    return _save(fig, path)


def core_usage(
    per_core: Sequence[Mapping[str, Any]], limits: Mapping[str, float | None], path: Path
) -> Path:
    """Per core: neurons, input axons and synaptic memory as fractions of the core's limits."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(per_core) + 2), 3.2))
    keys = [
        ("neurons", "neurons"),
        ("input_axons", "input axons"),
        ("memory_bits", "synapse memory"),
    ]
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        limit = limits.get(key)
        if not limit:
            continue
        xs = [c["core"] + k * width for c in per_core]
        ax.bar(xs, [c[key] / limit for c in per_core], width=width, label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("core")
    ax.set_ylabel("fraction of the core's limit")
    ax.set_title("Core usage after packing")
    ax.legend(fontsize=8)
    return _save(fig, path)


def chip_partition(partition: Mapping[str, Any], path: Path) -> Path:
    """Multi-chip partition: cores per chip, and spikes per sample on each chip-to-chip link."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    chips = sorted(partition["cores_per_chip"], key=int)
    left.bar(chips, [partition["cores_per_chip"][c] for c in chips])
    left.set_xlabel("chip")
    left.set_ylabel("cores used")
    left.set_title("Cores per chip")
    links = partition["links"]
    right.bar(list(links) or ["none"], list(links.values()) or [0.0])
    right.set_xlabel("link (source chip -> target chip)")
    right.set_ylabel("spikes / sample")
    total = partition["inter_chip_spikes_per_sample"]
    right.set_title(f"Inter-chip traffic ({total:.1f} spikes/sample)")
    return _save(fig, path)


def pareto_plot(
    rows: Sequence[Mapping[str, Any]],
    front: Mapping[str, Sequence[str]],
    path: Path,
    title: str = "",
) -> Path:
    """One chip's sweep: test accuracy against synapses (left) and against energy per sample
    (right), one marker colour per method; the Pareto front (``front[objective]``: trial names,
    fewest synapses / least energy first) circled and joined by a dashed line."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = (
        (axes[0], "synapses", "synapses", 1.0, "synapses (as the chip stores them)"),
        (axes[1], "energy", "energy_per_sample_j", 1e9, "energy per sample (nJ, profile figures)"),
    )
    methods = sorted({str(r.get("method")) for r in rows})
    for ax, objective, key, scale, label in panels:
        usable = [r for r in rows if r.get(key) is not None and r.get("accuracy") is not None]
        for k, method in enumerate(methods):
            mine = [r for r in usable if str(r.get("method")) == method]
            if not mine:
                continue
            ax.scatter(
                [r[key] * scale for r in mine],
                [100 * r["accuracy"] for r in mine],
                color=f"C{k}",
                label=method,
                zorder=3,
            )
        by_name = {r["trial"]: r for r in usable}
        best = [by_name[n] for n in front.get(objective, ()) if n in by_name]
        if best:
            xs, ys = [r[key] * scale for r in best], [100 * r["accuracy"] for r in best]
            ax.plot(xs, ys, "k--", lw=1, zorder=2)
            ax.scatter(
                xs, ys, s=130, facecolors="none", edgecolors="k", label="Pareto front", zorder=4
            )
        if not usable:
            ax.text(
                0.5,
                0.5,
                "no figures (simulation off or no\nenergy figures in the profile)",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        if ax.collections:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def map_per_stage(rows: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Bars of mAP@0.5 and mAP@0.5:0.95 (``{"map_50", "map"}``, in [0, 1]) per stage."""
    plt = _pyplot()
    stages = list(rows)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(stages), 3.4))
    for offset, (key, label) in enumerate((("map_50", "mAP@0.5"), ("map", "mAP@0.5:0.95"))):
        xs = [i + 0.38 * offset for i in range(len(stages))]
        ax.bar(xs, [100 * rows[s][key] for s in stages], width=0.36, label=label)
    ax.set_xticks([i + 0.19 for i in range(len(stages))], stages)
    ax.set_ylabel("%")
    highest = max(100 * rows[s][key] for s in stages for key in ("map_50", "map"))
    ax.set_ylim(0, min(100.0, max(1.0, 1.25 * highest)))
    ax.legend(loc="upper right")
    return _save(fig, path)


def detection_boxes(
    frames: Sequence[Any],
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[tuple[Any, Any]],
    class_names: Sequence[str],
    path: Path,
) -> Path:
    """One panel per scene: spike counts over T (grey), ground truth (green, class name) and
    predictions (red, class and score); ``frames[i]`` is ``(T, 1, H, W)``, boxes xyxy px."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle  # deferred: imports matplotlib

    fig, axes = plt.subplots(1, len(frames), figsize=(2.6 * len(frames), 2.9), squeeze=False)
    for ax, scene, found, (boxes, labels) in zip(
        axes[0], frames, predictions, targets, strict=True
    ):
        ax.imshow(scene.sum(axis=0)[0], cmap="gray", interpolation="nearest")
        for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime"))
            ax.text(x0 - 0.5, y0 - 1, class_names[int(label)], color="lime", fontsize=7)
        for (x0, y0, x1, y1), label, score in zip(
            found["boxes"].tolist(), found["labels"].tolist(), found["scores"].tolist(), strict=True
        ):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="red"))
            ax.text(
                x0 - 0.5, y1 + 2, f"{class_names[int(label)]} {score:.2f}", color="red", fontsize=7
            )
        ax.set_axis_off()
    return _save(fig, path)
