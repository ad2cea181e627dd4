"""Figures and tables of ``benchmarks/claims.py`` (``python benchmarks/claims.py report``).

Reads ``RESULTS/CLAIM.json`` (rows of one claim), draws ``FIGURES/claim_CLAIM.png`` per claim
that has results, and returns the Markdown tables (mean ± std over seeds, in % for
accuracies) that docs/claims.md quotes. A claim without results says "not run". Every table
carries the capacity frontier (the dense narrow network with at most the same synapses) and
the chip column (Loihi PTQ, bit-exact reference simulation).
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Row = dict[str, Any]
COMMAND = "python benchmarks/claims.py report"


def _load(results: Path, claim: str) -> list[Row]:
    path = results / f"{claim}.json"
    return json.loads(path.read_text()) if path.exists() else []


def _values(rows: Iterable[Row], field: str) -> list[float]:
    return [float(r[field]) for r in rows if r.get(field) is not None]


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _select(rows: list[Row], **match: Any) -> list[Row]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _frontier(rows: list[Row], targets: dict[int, int]) -> list[Row]:
    """Frontier rows whose target is the synapse count of the same seed (``seed -> B``)."""
    return [
        r
        for r in rows
        if r["method"] == "frontier" and targets.get(r["seed"]) == r["target_synapses"]
    ]


def _seeds(rows: list[Row]) -> str:
    return ", ".join(str(s) for s in sorted({r["seed"] for r in rows}))


def _table(headers: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


_RUN = {"command": ""}  # the run command of the claim being drawn (its meta file)


def _save(fig, path: Path, command: str) -> Path:
    """Write ``fig`` with the commands that reproduce it at its foot: the run (from the
    claim's meta file, else ``command``'s default) and this report."""
    run = _RUN["command"] or command.partition("# after: ")[2]
    if _RUN.get("variant"):
        first = fig.axes[0]
        first.set_title(f"{first.get_title()} [{_RUN['variant']}]", fontsize=9)
    footer = f"{run}\n{COMMAND}"
    fig.text(0.01, 0.005, footer, fontsize=6, family="monospace", color="0.3")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------


def _budgeted_table(rows: list[Row], methods: list[str], sparsities: list[float]) -> str:
    headers = ["sparsity", "B", "dense"]
    for m in methods:
        headers += [m, f"{m} on chip"]
    headers += ["frontier (dense narrow)", "frontier on chip", "frontier synapses"]
    lines = []
    for s in sparsities:
        group = [r for r in rows if r.get("target_sparsity") == s]
        if not group:
            continue
        targets = {r["seed"]: r["budget"] for r in group}
        front = _frontier(rows, targets)
        cells = [f"{s:g}", f"{group[0]['budget']:,}", _ms(_values(group[:3], "dense_accuracy"))]
        for m in methods:
            mine = _select(group, method=m)
            cells += [_ms(_values(mine, "accuracy")), _ms(_values(mine, "chip_accuracy"))]
        cells += [
            _ms(_values(front, "accuracy")),
            _ms(_values(front, "chip_accuracy")),
            _ms(_values(front, "synapses"), 1, 0),
        ]
        lines.append(cells)
    return _table(headers, lines)


def _budgeted_plot(rows, methods, sparsities, path: Path, title: str, command: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = [(m, dict(method=m)) for m in methods]
    for name, match in series:
        xs, ys, es, cs = [], [], [], []
        for s in sparsities:
            group = _select(rows, target_sparsity=s, **match)
            if group:
                xs.append(100 * s)
                mean, std = _mean_std(_values(group, "accuracy"))
                ys.append(100 * mean)
                es.append(100 * std)
                cs.append(100 * _mean_std(_values(group, "chip_accuracy"))[0])
        line = ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{name} (float)")
        ax.plot(xs, cs, ls=":", marker="x", color=line[0].get_color(), label=f"{name} (Loihi)")
    xs, ys, es = [], [], []
    for s in sparsities:
        group = [r for r in rows if r.get("target_sparsity") == s]
        front = _frontier(rows, {r["seed"]: r["budget"] for r in group})
        if front:
            mean, std = _mean_std(_values(front, "accuracy"))
            xs.append(100 * s)
            ys.append(100 * mean)
            es.append(100 * std)
    ax.errorbar(xs, ys, yerr=es, marker="s", color="k", capsize=3, label="dense narrow (frontier)")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path, command)


def schedulers(rows: list[Row], figures: Path) -> tuple[str, Path | None]:
    sparsities = [0.9, 0.95, 0.98, 0.99]
    methods = ["stds-sine", "stds-linear"]
    fig = _budgeted_plot(
        rows,
        methods,
        sparsities,
        figures / "claim_schedulers.png",
        "STDS sine vs linear, mlp 64-512-256-10, digits (mean ± std over seeds)",
        f"{COMMAND}  # after: python benchmarks/claims.py run schedulers",
    )
    diffs = []
    for s in sparsities:
        d = []
        for seed in sorted({r["seed"] for r in rows}):
            a = _select(rows, method="stds-sine", target_sparsity=s, seed=seed)
            b = _select(rows, method="stds-linear", target_sparsity=s, seed=seed)
            if a and b:
                d.append(a[0]["accuracy"] - b[0]["accuracy"])
        diffs.append([f"{s:g}", _ms(d), str(sum(x > 0 for x in d)) + f"/{len(d)}"])
    text = _budgeted_table(rows, methods, sparsities)
    text += "\n\nSine minus linear, paired by seed (points):\n\n"
    text += _table(["sparsity", "sine − linear", "seeds where sine wins"], diffs)
    return text, fig


def gradr(rows: list[Row], figures: Path) -> tuple[str, Path | None]:
    sparsities = [0.99, 0.995]
    fig = _budgeted_plot(
        rows,
        ["gradr"],
        sparsities,
        figures / "claim_gradr.png",
        "Grad R at 99 % and 99.5 %, mlp 64-512-256-10, digits",
        f"{COMMAND}  # after: python benchmarks/claims.py run gradr",
    )
    losses = []
    for s in sparsities:
        group = _select(rows, method="gradr", target_sparsity=s)
        loss = [r["dense_accuracy"] - r["accuracy"] for r in group]
        losses.append([f"{s:g}", _ms(loss)])
    text = _budgeted_table(rows, ["gradr"], sparsities)
    text += "\n\nLoss against the dense network (points):\n\n"
    text += _table(["sparsity", "dense − Grad R"], losses)
    return text, fig


def threshold(rows: list[Row], figures: Path) -> tuple[str, Path | None]:
    pruned = [r for r in rows if r["method"] != "frontier"]
    ds = sorted({r["D"] for r in pruned})
    lines = []
    for d in ds:
        group = _select(pruned, D=d)
        front = _frontier(rows, {r["seed"]: max(r["synapses"], 1) for r in group})
        lines.append(
            [
                f"{d:g}",
                _ms(_values(group, "sparsity"), 100, 2),
                _ms(_values(group, "synapses"), 1, 0),
                _ms(_values(group, "accuracy")),
                _ms(_values(group, "chip_accuracy")),
                _ms(_values(front, "accuracy")),
                _ms(_values(front, "chip_accuracy")),
            ]
        )
    monotone = []
    for seed in sorted({r["seed"] for r in pruned}):
        seq = [_select(pruned, D=d, seed=seed) for d in ds]
        sp = [g[0]["sparsity"] for g in seq if g]
        monotone.append(all(b >= a for a, b in zip(sp, sp[1:], strict=False)))
    headers = [
        "D",
        "final sparsity (%)",
        "synapses",
        "accuracy",
        "on chip",
        "frontier",
        "frontier on chip",
    ]
    text = _table(headers, lines)
    text += f"\n\nSparsity non-decreasing in D for {sum(monotone)} of {len(monotone)} seeds."
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for seed in sorted({r["seed"] for r in pruned}):
        got = sorted((r["D"], 100 * r["sparsity"]) for r in _select(pruned, seed=seed))
        ax.plot(
            [g[0] for g in got], [g[1] for g in got], marker="o", label=f"sparsity, seed {seed}"
        )
    ax.set_xscale("log")
    ax.set_xlabel("final threshold D (weight units, log scale)")
    ax.set_ylabel("final sparsity (%)")
    ax2 = ax.twinx()
    means = [100 * _mean_std(_values(_select(pruned, D=d), "accuracy"))[0] for d in ds]
    ax2.plot(ds, means, color="k", ls="--", marker="s", label="accuracy (mean)")
    ax2.set_ylabel("test accuracy (%)")
    ax.set_title("STDS (sine), fixed D, no controller: D against final sparsity")
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    path = _save(
        fig,
        figures / "claim_threshold.png",
        f"{COMMAND}  # after: python benchmarks/claims.py run threshold",
    )
    return text, path


def collapse(rows: list[Row], figures: Path) -> tuple[str, Path | None]:
    methods = [m for m in ("stds-sine (cosine lr)", "lats", "gmp") if _select(rows, method=m)]
    if not methods:
        return "not run", None
    group = [r for r in rows if r["method"] in methods]
    targets = {r["seed"]: r["budget"] for r in group}
    front = _frontier(rows, targets)
    lines = []
    for m in methods:
        mine = _select(rows, method=m)
        worst = [
            min(h["test_accuracy"] for h in r["history"] if h["stage"] == "prune") for r in mine
        ]
        last_prune = [
            [h["test_accuracy"] for h in r["history"] if h["stage"] == "prune"][-1] for r in mine
        ]
        lines.append(
            [
                m,
                _ms(_values(mine, "dense_accuracy")),
                _ms(worst),
                _ms(last_prune),
                _ms(_values(mine, "accuracy")),
                _ms(_values(mine, "chip_accuracy")),
            ]
        )
    lines.append(
        [
            "frontier (dense narrow)",
            "—",
            "—",
            "—",
            _ms(_values(front, "accuracy")),
            _ms(_values(front, "chip_accuracy")),
        ]
    )
    headers = [
        "method",
        "dense",
        "worst pruning epoch",
        "last pruning epoch",
        "after fine-tune",
        "on chip",
    ]
    text = _table(headers, lines)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2))
    for m in methods:
        mine = _select(rows, method=m)
        n = min(len(r["history"]) for r in mine)
        xs = list(range(1, n + 1))
        for axis, field, scale in ((ax, "test_accuracy", 100), (bx, "sparsity", 100)):
            per = [
                [scale * r["history"][i].get(field, float("nan")) for r in mine] for i in range(n)
            ]
            mean = [statistics.fmean(p) for p in per]
            std = [statistics.stdev(p) if len(p) > 1 else 0.0 for p in per]
            line = axis.plot(xs, mean, marker="o", label=m)[0]
            axis.fill_between(
                xs,
                [a - b for a, b in zip(mean, std, strict=True)],
                [a + b for a, b in zip(mean, std, strict=True)],
                color=line.get_color(),
                alpha=0.2,
            )
    prune_epochs = sum(
        1 for h in _select(rows, method=methods[0])[0]["history"] if h["stage"] == "prune"
    )
    for axis in (ax, bx):
        axis.axvline(prune_epochs + 0.5, color="0.5", ls=":", lw=1)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_xlabel("epoch (prune, then fine-tune after the dotted line)")
        axis.grid(alpha=0.3)
    ax.set_ylabel("test accuracy (%)")
    bx.set_ylabel("sparsity of the weights in use (%)")
    ax.set_title("accuracy over epochs at B = 7 % (93 % sparsity)")
    bx.set_title("sparsity over epochs (cosine learning rate)")
    ax.legend(fontsize=7)
    path = _save(
        fig,
        figures / "claim_collapse.png",
        f"{COMMAND}  # after: python benchmarks/claims.py run collapse",
    )
    return text, path


def structured_claim(
    rows: list[Row], figures: Path, name: str, title: str
) -> tuple[str, Path | None]:
    pruned = [r for r in rows if r["method"] != "frontier"]
    methods = list(dict.fromkeys(r["method"] for r in pruned))
    targets = {r["seed"]: r["budget"] for r in pruned}
    front = _frontier(rows, targets)
    lines = []
    for m in methods:
        mine = _select(pruned, method=m)
        lines.append(
            [
                m,
                _ms(_values(mine, "dense_accuracy")),
                _ms(_values(mine, "accuracy")),
                _ms(_values(mine, "chip_accuracy")),
                _ms(_values(mine, "synapses"), 1, 0) + f" of {mine[0]['dense_synapses']:,}",
                _ms([r["parameters"] / r["parameters_before"] for r in mine], 100, 1),
                _ms(_values(mine, "neurons"), 1, 0) + f" of {mine[0]['neurons_before']:,}",
            ]
        )
    lines.append(
        [
            "frontier (dense narrow)",
            "—",
            _ms(_values(front, "accuracy")),
            _ms(_values(front, "chip_accuracy")),
            _ms(_values(front, "synapses"), 1, 0),
            "—",
            "—",
        ]
    )
    headers = ["method", "dense", "pruned", "on chip", "synapses", "parameters kept (%)", "neurons"]
    text = _table(headers, lines)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    labels = [*methods, "frontier"]
    groups = [_select(pruned, method=m) for m in methods] + [front]
    for i, group in enumerate(groups):
        for j, (field, shift) in enumerate((("accuracy", -0.2), ("chip_accuracy", 0.2))):
            mean, std = _mean_std(_values(group, field))
            ax.bar(i + shift, 100 * mean, width=0.38, yerr=100 * std, capsize=3,
                   color=("C0", "C1")[j], label=("float", "Loihi (bit-exact)")[j] if i == 0 else None)  # fmt: skip
            for r in group:
                ax.plot(i + shift, 100 * r[field], "k.", ms=4)
    dense_mean = 100 * _mean_std(_values(pruned, "dense_accuracy"))[0]
    ax.axhline(dense_mean, color="0.3", ls="--", lw=1, label="dense (mean)")
    ax.set_xticks(range(len(labels)), labels, rotation=15, fontsize=7)
    low = min(100 * min(_values(pruned + front, "accuracy") + [1.0]), dense_mean) - 10
    ax.set_ylim(max(0, low), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    path = _save(
        fig,
        figures / f"claim_{name}.png",
        f"{COMMAND}  # after: python benchmarks/claims.py run {name}",
    )
    return text, path


BUILDERS: dict[str, Callable[[list[Row], Path], tuple[str, Path | None]]] = {
    "threshold": threshold,
    "schedulers": schedulers,
    "collapse": collapse,
    "gradr": gradr,
    "sca": lambda rows, f: structured_claim(
        rows, f, "sca", "SCA on conv (16, 32) at 75 % synapse sparsity: regrowth and importance"
    ),
    "channels": lambda rows, f: structured_claim(
        rows, f, "channels", "SCA channel pruning to half the synapses, conv (16, 32)"
    ),
}


def report(results: Path, figures: Path) -> str:
    """Every claim's table and figure (Markdown); a variant (``CLAIM-VARIANT.json``, e.g. a
    longer schedule) gets its own section and figure ``claim_CLAIM-VARIANT.png``."""
    out = []
    for claim, build in BUILDERS.items():
        stems = [claim] + sorted(
            p.stem for p in results.glob(f"{claim}-*.json") if not p.stem.endswith(".meta")
        )
        for stem in stems:
            rows = _load(results, stem)
            out += [f"## {stem}", ""]
            if not rows:
                out += ["not run", ""]
                continue
            meta_file = results / f"{stem}.meta.json"
            _RUN["command"] = ""
            _RUN["variant"] = stem.partition("-")[2]
            if meta_file.exists():
                meta = json.loads(meta_file.read_text())
                _RUN["command"] = meta["command"]
                out += [f"- command: `{meta['command']}`", f"- machine: {meta['machine']}"]
            out += [f"- seeds: {_seeds(rows)}", ""]
            variant = figures / "variant" if stem != claim else figures
            text, figure = build(rows, variant)
            if figure is not None and stem != claim:
                figure = figure.rename(figures / f"claim_{stem}.png")
            out += [text, ""]
            if figure is not None:
                out += [f"![{stem}]({figure.name})", ""]
    with contextlib.suppress(OSError):  # the variants' drawing folder, empty once renamed
        (figures / "variant").rmdir()
    return "\n".join(out)
