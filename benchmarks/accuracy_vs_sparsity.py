"""Accuracy versus sparsity for every pruning method, at exact synapse budgets.

For each model and seed: train the dense model, then for each sparsity ``S`` and method prune a
copy to ``B = floor((1 - S) * dense synapses)`` with :func:`neuroprune.pruning.prune_to_budget`
(prune epochs + fine-tune epochs) and record the test accuracy and the synapses kept. Writes a
Markdown table (mean ± std over seeds, dense accuracy beside it) with the exact command and the
machine, and prints it.

Full grid (slow; run on an idle machine)::

    python benchmarks/accuracy_vs_sparsity.py --dataset digits --models mlp conv \\
        --sparsities 0.9 0.95 0.98 0.99 \\
        --methods stds-sine stds-linear lats gradr gmp magnitude --seeds 0 1 2 \\
        --out docs/benchmarks_pruning.md

The report is rewritten after every (model, seed), so an interrupted grid keeps what it did.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import shlex
import sys
import time
from pathlib import Path

import torch
from common import limited, machine, mean_std  # noqa: E402  (benchmarks/common.py)

from neuroprune.core.atomic import write_text
from neuroprune.data.datasets import load_dataset
from neuroprune.fit.budget import derive_budget
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import prune_to_budget
from neuroprune.pruning import split_method_spec
from neuroprune.train.loop import default_config, train

DEFAULT_METHODS = ("stds-sine", "stds-linear", "lats", "gradr", "gmp", "magnitude")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", choices=("digits", "mnist"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98, 0.99])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--dense-epochs", type=int, default=15)
    parser.add_argument("--prune-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-limit", type=int, default=None, help="use only N train images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/benchmarks_pruning.md")
    return parser.parse_args(argv)


def run_seed(args, dataset, model_name: str, seed: int) -> list[dict]:
    """Dense training, then every (sparsity, method) pruning run for one model and seed."""
    config = default_config(
        model_name,
        epochs=args.dense_epochs,
        batch_size=args.batch_size,
        timesteps=args.timesteps,
        seed=seed,
    )
    dense = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=seed)
    dense_acc = train(dense, dataset, config).test_accuracy
    summary = summarize(dense, dataset.input_shape, args.timesteps)
    rows = []
    for sparsity in args.sparsities:
        budget = derive_budget(None, summary, sparsity=sparsity)
        for spec in args.methods:
            name, scheduler = split_method_spec(spec)
            started = time.perf_counter()
            result = prune_to_budget(
                copy.deepcopy(dense),
                dataset,
                config,
                method=name,
                budget=budget,
                scheduler=scheduler,
                epochs=args.prune_epochs,
                finetune_epochs=args.finetune_epochs,
            )
            rows.append(
                {
                    "model": model_name,
                    "seed": seed,
                    "sparsity": sparsity,
                    "method": spec,
                    "budget": budget.synapses,
                    "synapses": result.synapses,
                    "dense_accuracy": dense_acc,
                    "accuracy": result.accuracy,
                    "seconds": time.perf_counter() - started,
                }
            )
            print(
                f"  {model_name} seed={seed} S={sparsity} {spec}: acc={result.accuracy:.3f} "
                f"synapses={result.synapses}/{budget.synapses}",
                file=sys.stderr,
            )
    return rows


def table(rows: list[dict], methods: list[str]) -> str:
    """Markdown: one row per (model, sparsity); dense accuracy and one column per method."""
    header = "| model | sparsity | B | synapses kept (min-max) | dense acc (%) | " + " | ".join(
        methods
    )
    lines = [header + " |", "|" + "---|" * (5 + len(methods))]
    keys = sorted({(r["model"], r["sparsity"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for model, sparsity in keys:
        group = [r for r in rows if r["model"] == model and r["sparsity"] == sparsity]
        dense = mean_std([r["dense_accuracy"] for r in group if r["method"] == group[0]["method"]])
        cells = [mean_std([r["accuracy"] for r in group if r["method"] == m]) for m in methods]
        kept = f"{min(r['synapses'] for r in group)}-{max(r['synapses'] for r in group)}"
        budget = group[0]["budget"]
        lines.append(
            f"| {model} | {sparsity:g} | {budget} | {kept} | {dense} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def report(args, rows: list[dict], seconds: float) -> str:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    return "\n".join(
        [
            "# Accuracy vs sparsity at exact synapse budgets",
            "",
            f"- command: `{command}`",
            f"- machine: {machine()}",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; wall time {seconds:.0f} s",
            f"- dataset: {args.dataset}; dense {args.dense_epochs} epochs, prune {args.prune_epochs} + "
            f"fine-tune {args.finetune_epochs} epochs; T = {args.timesteps}; batch {args.batch_size}"
            + (f"; first {args.train_limit} train images" if args.train_limit else ""),
            "- B = floor((1 - sparsity) x dense synapses); synapses counted as nonzero weights "
            "after BN folding, conv unrolled; every run keeps <= B synapses.",
            "- cells: test accuracy (%) mean ± std over seeds " + ", ".join(map(str, args.seeds)),
            "",
            table(rows, args.methods),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = limited(load_dataset(args.dataset, args.data_dir), args.train_limit)
    started = time.perf_counter()
    rows: list[dict] = []
    for model_name in args.models:
        for seed in args.seeds:
            rows += run_seed(args, dataset, model_name, seed)
            text = report(args, rows, time.perf_counter() - started)
            write_text(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
