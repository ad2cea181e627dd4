"""Plots for people (layer L7). matplotlib is imported here only, with the Agg backend.

Each function takes plain dicts/lists or typed rows (from report.json, :mod:`neuroprune.run.record`)
and writes one PNG atomically.
"""

from __future__ import annotations

import json
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
    """Write ``fig`` as a PNG whose text chunks say what it draws: ``Title`` (the figure's
    title) and ``Description`` (:func:`figure_description`, JSON), for readers and tests."""
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    metadata = {"Title": title, "Description": json.dumps(figure_description(fig))}
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png", metadata=metadata)
    _pyplot().close(fig)
    return path


def figure_description(fig) -> list[dict[str, Any]]:
    """Per panel, as matplotlib drew it: ``title``, axis labels, tick labels, the labels of its
    lines and each line's style (``"-"``, ``"--"``...), its texts, its legend entries."""
    fig.canvas.draw()  # tick labels exist once drawn
    panels = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        panels.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "xticks": [t.get_text() for t in ax.get_xticklabels()],
                "yticks": [t.get_text() for t in ax.get_yticklabels()],
                "lines": [
                    {"label": line.get_label(), "style": line.get_linestyle()}
                    for line in ax.get_lines()
                    if not line.get_label().startswith("_")
                ],
                "texts": [t.get_text() for t in ax.texts],
                "legend": [
                    t.get_text() for t in (ax.get_legend().get_texts() if ax.get_legend() else [])
                ],
            }
        )
    return panels


STAGE_LABELS = {
    "dense": "dense training",
    "prune": "pruning",
    "finetune": "fine-tuning (mask frozen)",
    "quantize": "quantization-aware fine-tuning",
}


STAGE_TAGS = {"dense": "dense", "prune": "prune", "finetune": "fine-tune", "quantize": "QAT"}


def _integer_axis(axis) -> None:
    """Ticks on whole numbers only (cores, chips, epochs)."""
    from matplotlib.ticker import MaxNLocator  # deferred: imports matplotlib

    axis.set_major_locator(MaxNLocator(integer=True))


def _varies(values: Sequence[float | None]) -> bool:
    """Whether a series holds two different numbers (a panel of one constant adds nothing)."""
    return len({v for v in values if v is not None}) > 1


def training_curves(
    history: Mapping[str, Sequence[Mapping[str, Any]]],
    path: Path,
    *,
    title: str = "",
    quantized: Any = None,
) -> Path:
    """Test accuracy per epoch over every stage that trained, each stage between dashed
    boundaries and named; at the quantization boundary the float model's accuracy and the
    post-training quantized one (PTQ), the drop between them annotated; a quantization-aware
    fine-tune the validation part reverted drawn grey and dashed, with the deployed PTQ level
    across it; the deployed model's accuracy as a star. A second panel (sparsity of counted
    synapses, the method's knob on its own axis) only where pruning ran and changed them.

    ``quantized``: report.json's ``quantized`` section (:class:`QuantizedRecord`) or None."""
    plt = _pyplot()
    rows_of = {stage: list(rows) for stage, rows in history.items() if rows}
    pruning = [r for stage in ("prune", "finetune") for r in rows_of.get(stage, [])]
    show_sparsity = _varies([r.get("sparsity") for r in pruning])
    fig, axes = plt.subplots(
        1,
        2 if show_sparsity else 1,
        figsize=(15 if show_sparsity else 10, 3.8),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.5, 1]} if show_sparsity else None,
    )
    acc_ax = axes[0][0]
    qat = getattr(quantized, "qat", None)
    reverted = getattr(qat, "decision", None) == "reverted"
    offset, spans = 0, {}
    for k, stage in enumerate(("dense", "prune", "finetune", "quantize")):
        rows = rows_of.get(stage)
        if not rows:
            continue
        epochs = [offset + i + 1 for i in range(len(rows))]
        spans[stage] = (offset, epochs[-1])
        acc = [_percent(r.get("test_accuracy")) for r in rows]
        style: dict[str, Any] = {"marker": "o", "ms": 3, "color": f"C{k}"}
        label = STAGE_LABELS.get(stage, stage)
        if stage == "quantize" and reverted:
            style.update(color="0.6", ls="--", mfc="white")
            label += " (reverted: PTQ kept)"
        if stage == "quantize" and quantized is not None:  # start from the PTQ point
            epochs, acc = [offset, *epochs], [_percent(quantized.accuracy_ptq), *acc]
        acc_ax.plot(epochs, acc, label=label, **style)
        if stage == "quantize" and any(r.get("val_accuracy") is not None for r in rows):
            val = [_percent(r.get("val_accuracy")) for r in rows]
            acc_ax.plot(
                epochs[-len(rows) :],
                val,
                ls=":",
                marker="x",
                ms=4,
                color=style["color"],
                label="validation accuracy (its loss decides keep / revert)",
            )
        offset = spans[stage][1]
    _quantization_drop(acc_ax, quantized, spans, reverted)
    if getattr(qat, "decision", None) == "skipped":  # no QAT epochs to draw: say why
        acc_ax.plot([], [], " ", label=_skipped_label(qat))
    for stage, (start, stop) in spans.items():
        acc_ax.axvline(start + 0.5 if start else 0.5, color="k", lw=0.6, ls="--", alpha=0.5)
        acc_ax.text(
            (start + stop) / 2 + 0.5,
            1.01 + 0.055 * (list(spans).index(stage) % 2),  # narrow stages: labels alternate
            STAGE_TAGS.get(stage, stage),
            transform=acc_ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_xlabel("epoch (all stages in order)")
    _integer_axis(acc_ax.xaxis)
    acc_ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if show_sparsity:
        _sparsity_panel(axes[0][1], pruning, spans)
    fig.suptitle(title or "Training", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _skipped_label(qat: Any) -> str:
    """Legend line of a skipped fine-tune: PTQ lost nothing on the validation part."""
    ptq, flt = _percent(qat.val_ptq), _percent(qat.val_float)
    if ptq is None or flt is None:
        return "QAT skipped: PTQ lost nothing on validation"
    return f"QAT skipped: PTQ lost nothing on validation ({ptq:.1f} % >= {flt:.1f} %)"


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _quantization_drop(ax, quantized: Any, spans: Mapping[str, tuple[int, int]], reverted):
    """The float model's accuracy and PTQ's at the quantization boundary joined by an arrow,
    the drop written beside it; the deployed model's accuracy as a star at the fine-tune's best
    epoch (kept) or at PTQ with a flat line across the reverted fine-tune."""
    if quantized is None or quantized.accuracy_ptq is None:
        return
    at = spans.get("quantize", (max((s for _, s in spans.values()), default=0), 0))[0]
    before, ptq = _percent(quantized.accuracy_float), _percent(quantized.accuracy_ptq)
    if before is not None:
        ax.annotate(
            "",
            xy=(at, ptq),
            xytext=(at, before),
            arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.5},
        )
        low, high = ax.get_ylim()
        small = abs(before - ptq) < 0.15 * (high - low)  # no room beside the arrow: above it
        ax.annotate(
            f"quantization\n{ptq - before:+.1f} points",
            xy=(at, max(before, ptq)) if small else (at, (before + ptq) / 2),
            xytext=(-6, 26) if small else (-6, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=8,
            color="C3",
            arrowprops={"arrowstyle": "-", "color": "C3", "lw": 0.6} if small else None,
        )
        ax.plot(
            [at],
            [before],
            marker="s",
            ms=5,
            color="k",
            ls="",
            label="float model before quantization",
        )
    ax.plot([at], [ptq], marker="v", ms=6, color="C3", ls="", label="post-training quantized (PTQ)")
    end = spans.get("quantize", (at, at))[1]
    deployed = _percent(quantized.accuracy)
    if deployed is None:
        return
    qat = getattr(quantized, "qat", None)
    best = getattr(qat, "best_epoch", None)
    where = at if reverted or not best else at + int(best)
    if reverted:
        ax.plot([at, end], [deployed, deployed], color="C3", lw=1.5, label="deployed: PTQ kept")
    ax.plot(
        [where],
        [deployed],
        marker="*",
        ms=12,
        color="gold",
        mec="k",
        ls="",
        label=f"deployed: {deployed:.1f} %",
    )


def _sparsity_panel(ax, rows: Sequence[Mapping[str, Any]], spans) -> None:
    """Sparsity of counted synapses (%) per pruning and fine-tuning epoch; the method's knob
    on a second axis where it changed."""
    start = spans.get("prune", spans.get("finetune", (0, 0)))[0]
    epochs = [start + i + 1 for i in range(len(rows))]
    ax.plot(
        epochs,
        [_percent(r.get("sparsity")) for r in rows],
        "o-",
        ms=3,
        color="C1",
        label="sparsity of counted synapses",
    )
    ax.set_ylabel("sparsity (%)")
    ax.set_xlabel("epoch (all stages in order)")
    _integer_axis(ax.xaxis)
    ax.grid(alpha=0.3)
    knob = [r.get("knob") for r in rows]
    if _varies(knob):
        twin = ax.twinx()
        name = next((r.get("knob_name") for r in rows if r.get("knob_name")), "knob")
        twin.plot(epochs, knob, "s--", ms=3, color="C4", label=f"pruning {name}")
        twin.set_ylabel(f"pruning {name}")
        twin.legend(fontsize=7, loc="lower right")
    if "finetune" in spans:
        ax.axvline(spans["finetune"][0] + 0.5, color="k", lw=0.6, ls="--", alpha=0.5)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Pruning", fontsize=9)


def layer_synapses(
    pruned: Sequence[LayerRow],
    stored: Sequence[LayerRow],
    budget: int | None,
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Left: per layer (the model's layer names), dense positions, synapses kept by pruning
    and synapses as the chip stores them after quantization (log scale; the loss to rounding
    annotated). Right: the stored total, stacked by layer, against the synapse budget."""
    plt = _pyplot()
    names = [r.layer for r in pruned]
    stored_by = {r.layer: r.synapses for r in stored}
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(max(6, 1.6 * len(names) + 4), 3.8),
        gridspec_kw={"width_ratios": [max(2, len(names)), 1.2]},
    )
    xs = list(range(len(names)))
    width = 0.27
    left.bar(
        [x - width for x in xs],
        [r.dense for r in pruned],
        width,
        color="#d0d0d0",
        label="dense positions",
    )
    left.bar(xs, [r.synapses for r in pruned], width, color="#2a7ab9", label="kept by pruning")
    if stored_by:
        kept = [stored_by.get(n, 0) for n in names]
        left.bar(
            [x + width for x in xs],
            kept,
            width,
            color="#e08214",
            label="stored on the chip (after quantization)",
        )
        for x, r, k in zip(xs, pruned, kept, strict=True):
            lost = r.synapses - k
            note = f"{k:,}" + (
                f"\n(-{lost:,}, {100 * lost / r.synapses:.1f} %)" if lost > 0 and r.synapses else ""
            )
            left.annotate(note, (x + width, max(k, 1)), ha="center", va="bottom", fontsize=7)
    left.set_xticks(xs, [f"layer {n}" for n in names])
    left.set_yscale("log")
    left.set_ylim(bottom=1)
    left.set_ylabel("synapses (log)")
    left.legend(fontsize=7, loc="lower left")
    left.set_title("Per layer", fontsize=9)
    rows = stored if stored_by else pruned
    bottom = 0
    for k, r in enumerate(rows):
        right.bar([0], [r.synapses], bottom=bottom, color=f"C{k}", label=f"layer {r.layer}")
        bottom += r.synapses
    if budget:
        right.axhline(budget, color="k", ls="--", lw=1)
        right.text(0.42, budget, f"budget {budget:,}", va="bottom", ha="right", fontsize=8)
    right.set_xticks([0], ["stored" if stored_by else "kept"])
    right.set_ylim(0, max(bottom, budget or 0) * 1.15 or 1)
    right.set_ylabel("synapses")
    right.set_title(f"Total {bottom:,} vs budget", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "Synapses per layer", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def spike_rates(layers: Sequence[SimLayerRow], path: Path, *, title: str = "") -> Path:
    """Spikes per neuron per step, per layer (from the simulation), the layers named as the
    model names them."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(layers)), 3.2))
    names = [f"layer {r.layer}" for r in layers]
    rates = [r.rate or 0 for r in layers]
    ax.bar(names, rates, color="#c0504d")
    for i, rate in enumerate(rates):
        ax.annotate(f"{rate:.3f}", (i, rate), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("spikes / neuron / step")
    ax.set_title("Spikes per neuron per step (simulated)", fontsize=9)
    fig.suptitle(title or "Spike rates", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


CORE_RESOURCES = (
    ("neurons", "neurons"),
    ("input_axons", "input axons"),
    ("memory_bits", "synapse memory"),
)


def core_map(
    per_core: Sequence[Mapping[str, Any]],
    placements: Sequence[Mapping[str, Any]],
    limits: Mapping[str, float | None],
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Left: per core used (whole-number core ids), neurons, input axons and synaptic memory
    as fractions of one core's limits (a resource without a limit in the profile, or unused,
    is left out). Right: the layer-to-core map, neurons of each layer on each core, the chip
    each core sits on under its id."""
    plt = _pyplot()
    cores = [int(c["core"]) for c in per_core]
    layers = list(dict.fromkeys(str(p["layer"]) for p in placements))
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(max(8, 0.45 * len(cores) + 6), max(3.4, 0.35 * len(layers) + 2)),
        gridspec_kw={"width_ratios": [1.1, 1]},
    )
    shown = [
        (key, label)
        for key, label in CORE_RESOURCES
        if limits.get(key) and any(c.get(key) for c in per_core)
    ]
    width = 0.8 / max(len(shown), 1)
    for k, (key, label) in enumerate(shown):
        xs = [i + (k - (len(shown) - 1) / 2) * width for i in range(len(cores))]
        left.bar(
            xs, [c[key] / limits[key] for c in per_core], width=width, label=label, color=f"C{k}"
        )
    left.axhline(1.0, color="k", lw=0.8, ls="--")
    chip_of = {int(c["core"]): int(c.get("chip", 0)) for c in per_core}
    ticks = _core_ticks(cores, chip_of)
    left.set_xticks(range(len(cores)), ticks)
    left.set_xlabel("core")
    left.set_ylabel("fraction of one core's limit")
    left.set_ylim(0, 1.15)
    left.set_title("Use of each core", fontsize=9)
    if shown:
        left.legend(fontsize=7, loc="upper right")
    grid = [[0] * len(cores) for _ in layers]
    column = {core: i for i, core in enumerate(cores)}
    for p in placements:
        if int(p["core"]) in column:
            grid[layers.index(str(p["layer"]))][column[int(p["core"])]] += int(p["stop"]) - int(
                p["start"]
            )
    image = right.imshow(grid, aspect="auto", cmap="Blues", vmin=0)
    for i, row in enumerate(grid):
        for j, n in enumerate(row):
            if n and len(cores) <= 24:
                right.text(
                    j,
                    i,
                    f"{n:,}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if n > 0.6 * max(max(r) for r in grid) else "black",
                )
    right.set_xticks(range(len(cores)), ticks)
    right.set_yticks(range(len(layers)), [f"layer {n}" for n in layers])
    right.set_xlabel("core")
    right.set_title("Layer-to-core map (neurons placed)", fontsize=9)
    fig.colorbar(image, ax=right, fraction=0.05, label="neurons")
    fig.suptitle(title or "Cores", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _core_ticks(cores: Sequence[int], chip_of: Mapping[int, int]) -> list[str]:
    """``"3\nchip 0"``: core 3 on chip 0 (the chip only under a chip's first core); with
    many cores only every n-th is labelled."""
    step = max(1, len(cores) // 16)
    ticks = []
    for i, core in enumerate(cores):
        chip = chip_of.get(core, 0)
        first = i == 0 or chip_of.get(cores[i - 1], 0) != chip
        label = f"{core}" + (f"\nchip {chip}" if first else "")
        ticks.append(label if i % step == 0 or first else "")
    return ticks


def chip_partition(partition: Mapping[str, Any], path: Path, *, title: str = "") -> Path:
    """Multi-chip partition: cores per chip, and spikes per sample on each chip-to-chip link."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    chips = sorted(partition["cores_per_chip"], key=int)
    left.bar(chips, [partition["cores_per_chip"][c] for c in chips])
    left.set_xlabel("chip")
    left.set_ylabel("cores used")
    _integer_axis(left.yaxis)
    left.set_title("Cores per chip", fontsize=9)
    links = partition["links"]
    right.bar(list(links) or ["none"], list(links.values()) or [0.0])
    right.set_xlabel("link (source chip -> target chip)")
    right.set_ylabel("spikes / sample")
    total = partition["inter_chip_spikes_per_sample"]
    right.set_title(f"Inter-chip traffic ({total:.1f} spikes/sample)", fontsize=9)
    fig.suptitle(title or "Chips", fontsize=10)
    fig.tight_layout()
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
