"""SCA vs SCA+STDS vs STDS at equal synapse budgets: accuracy, neurons and cores.

For each seed: train the dense ``conv`` model on digits, then for each sparsity ``S`` prune a
copy of it to ``B = floor((1 - S) * dense synapses)`` (the chip allocation is far larger, so the
sparsity binds) with

* ``stds``: :func:`neuroprune.pruning.prune_to_budget` (unstructured, exactly ``B``);
* ``sca``: :func:`neuroprune.pipeline.structured.prune_structured` (channels, ``<= B``, fewer neurons);
* ``sca+stds``: the same with ``then_stds=True`` (channels, then STDS to exactly ``B``).

Every method gets the same epochs (prune + fine-tune). Cores: ``neuroprune.fit.rules.check_fit`` on
the summary of the pruned model for the chip profile (default Loihi). Prints a Markdown table
(mean ± std over seeds) with the exact command and the machine, and writes it to ``--out``.

Example (about a minute on one thread)::

    python benchmarks/sca.py --sparsities 0.8 0.9 --seeds 0 --prune-epochs 4 \\
        --finetune-epochs 2 --out docs/benchmarks/sca.md
"""

from __future__ import annotations

import argparse
import copy
import datetime
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from common import limited, machine, mean_std  # noqa: E402  (benchmarks/common.py)

from neuroprune.chip.profiles import load_profile
from neuroprune.core.atomic import write_text
from neuroprune.data.datasets import load_dataset
from neuroprune.fit.budget import derive_budget
from neuroprune.fit.rules import check_fit
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import prune_to_budget
from neuroprune.pipeline.structured import prune_structured
from neuroprune.train.loop import default_config, train

METHODS = ("stds", "sca", "sca+stds")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", choices=("digits", "mnist"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--hidden", nargs="+", type=int, default=[8, 16], help="conv channels")
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.8, 0.9])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--chip", default="loihi")
    parser.add_argument("--dense-epochs", type=int, default=10)
    parser.add_argument("--prune-epochs", type=int, default=6)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--p", type=float, default=0.0, help="SCA: fraction pruned at least")
    parser.add_argument("--q", type=float, default=0.1, help="SCA: fraction regrown per update")
    parser.add_argument("--train-limit", type=int, default=None, help="use only N train images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/benchmarks/sca.md")
    return parser.parse_args(argv)


def prune(method: str, dense, dataset, config, budget, profile, args):
    """One pruning run; returns the pruned model and its test accuracy."""
    common = {
        "budget": budget,
        "epochs": args.prune_epochs,
        "finetune_epochs": args.finetune_epochs,
    }
    model = copy.deepcopy(dense)
    if method == "stds":
        result = prune_to_budget(model, dataset, config, method="stds", **common)
    else:
        result = prune_structured(
            model,
            dataset,
            config,
            p=args.p,
            q=args.q,
            profile=profile,
            then_stds=method == "sca+stds",
            **common,
        )
    return result.model, result.accuracy


def measure(model, dataset, timesteps: int, profile) -> dict:
    """Synapses, neurons, cores used and the fit verdict of ``model`` on ``profile``."""
    summary = summarize(model, dataset.input_shape, timesteps)
    fit = check_fit(summary, profile)
    shared = profile.conv_weight_sharing
    return {
        "synapses": summary.synapses(shared),
        "neurons": summary.neurons,
        "cores": fit.cores_used,
        "fits": fit.fits,
    }


def run_seed(args, dataset, profile, seed: int) -> list[dict]:
    """Dense training, then every (sparsity, method) run for one seed."""
    config = default_config(
        "conv",
        epochs=args.dense_epochs,
        batch_size=args.batch_size,
        timesteps=args.timesteps,
        seed=seed,
    )
    dense = build_model(
        "conv", dataset.input_shape, dataset.num_classes, hidden=args.hidden, seed=seed
    )
    dense_acc = train(dense, dataset, config).test_accuracy
    summary = summarize(dense, dataset.input_shape, args.timesteps)
    rows = [
        {
            "seed": seed,
            "sparsity": 0.0,
            "method": "dense",
            "budget": None,
            "accuracy": dense_acc,
            "seconds": 0.0,
            **measure(dense, dataset, args.timesteps, profile),
        }
    ]
    for sparsity in args.sparsities:
        budget = derive_budget(profile, summary, sparsity=sparsity)
        for method in args.methods:
            started = time.perf_counter()
            model, accuracy = prune(method, dense, dataset, config, budget, profile, args)
            row = {
                "seed": seed,
                "sparsity": sparsity,
                "method": method,
                "budget": budget.synapses,
                "accuracy": accuracy,
                "seconds": time.perf_counter() - started,
                **measure(model, dataset, args.timesteps, profile),
            }
            rows.append(row)
            print(
                f"  seed={seed} S={sparsity} {method}: acc={accuracy:.3f} "
                f"synapses={row['synapses']}/{budget.synapses} neurons={row['neurons']} "
                f"cores={row['cores']}",
                file=sys.stderr,
            )
    return rows


def table(rows: list[dict], methods: list[str]) -> str:
    """Markdown: one row per (sparsity, method), dense first."""
    lines = [
        "| sparsity | B | method | accuracy (%) | synapses | neurons | cores | fits | s/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = [(0.0, "dense")] + [
        (s, m)
        for s in sorted({r["sparsity"] for r in rows if r["method"] != "dense"})
        for m in methods
    ]
    for sparsity, method in keys:
        group = [r for r in rows if r["sparsity"] == sparsity and r["method"] == method]
        if not group:
            continue
        budget = group[0]["budget"] if group[0]["budget"] is not None else "-"
        cells = [
            f"{sparsity:g}",
            str(budget),
            method,
            mean_std([r["accuracy"] for r in group]),
            mean_std([r["synapses"] for r in group], 1, digits=0),
            mean_std([r["neurons"] for r in group], 1, digits=0),
            mean_std([r["cores"] for r in group], 1, digits=1),
            "/".join("yes" if r["fits"] else "no" for r in group),
            f"{statistics.fmean(r['seconds'] for r in group):.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(args, rows: list[dict], seconds: float) -> str:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    return "\n".join(
        [
            "# SCA vs SCA+STDS vs STDS at equal synapse budgets",
            "",
            f"- command: `{command}`",
            f"- machine: {machine()}",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; wall time "
            f"{seconds:.0f} s",
            f"- dataset: {args.dataset}; model conv {tuple(args.hidden)}; dense {args.dense_epochs} "
            f"epochs; every method prune {args.prune_epochs} + fine-tune {args.finetune_epochs} "
            f"epochs (sca+stds: half the prune epochs SCA, half STDS); T = {args.timesteps}; batch "
            f"{args.batch_size}; SCA p = {args.p}, q = {args.q}"
            + (f"; first {args.train_limit} train images" if args.train_limit else ""),
            f"- chip profile: {args.chip} (cores from neuroprune.fit.rules.check_fit on the pruned model)",
            "- B = floor((1 - sparsity) x dense synapses); synapses = nonzero weights after BN "
            "folding, conv unrolled; neurons = spiking units (fall only with channel pruning).",
            "- cells: mean ± std over seeds " + ", ".join(map(str, args.seeds)),
            "",
            table(rows, args.methods),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = limited(load_dataset(args.dataset, args.data_dir), args.train_limit)
    profile = load_profile(args.chip)
    started = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(args, dataset, profile, seed)]
    text = report(args, rows, time.perf_counter() - started)
    write_text(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
