"""Training-time overhead of the pruning reparameterisations (target: <= 1.10x dense).

Same model, data, seed and training settings: for each method, runs of the plain (dense) model
and of the model with the method attached as a callback (its parametrization in every forward
pass, its per-step work after every optimizer step) alternate ``--repeats`` times. Reports the
fastest epoch of each (training + the per-epoch test evaluation, as ``train`` measures it; the
minimum is the estimate least disturbed by other load) and the ratio to dense. Writes a Markdown table with the exact command and machine, and prints it.

Example::

    python benchmarks/overhead.py --models mlp conv --epochs 3 --out /tmp/overhead.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys

import torch
from common import cpu_model, publish  # noqa: E402  (benchmarks/common.py)

from neuroprune.data.datasets import load_dataset
from neuroprune.fit.budget import derive_budget
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pipeline.prune_loop import lr_schedule
from neuroprune.pruning import split_method_spec
from neuroprune.pruning.registry import method_class
from neuroprune.train.loop import default_config, train

DEFAULT_METHODS = ("stds-sine", "lats", "gradr", "gmp", "magnitude")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", choices=("digits", "mnist"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    return parser.parse_args(argv)


def epoch_seconds(history) -> float:
    """Fastest epoch of a training history (the least disturbed by other load)."""
    return min(row["seconds"] for row in history)


def timed_epoch(args, dataset, model_name: str, config, spec: str | None, budget) -> float:
    """Fastest epoch of one training run: plain model (``spec=None``) or with a method."""
    model = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=0)
    callbacks = []
    if spec is not None:
        name, scheduler = split_method_spec(spec)
        method = method_class(name)(
            budget,
            input_shape=dataset.input_shape,
            scheduler=scheduler,
            lr_schedule=lr_schedule(config, len(dataset.y_train)),
        )
        method.attach(model)
        callbacks = [method]
    return epoch_seconds(train(model, dataset, config, callbacks=callbacks).history)


def time_model(args, dataset, model_name: str) -> list[dict]:
    """Per method: dense and method runs interleaved ``repeats`` times, fastest epoch of each."""
    config = default_config(
        model_name, epochs=args.epochs, batch_size=args.batch_size, timesteps=args.timesteps
    )
    fresh = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=0)
    budget = derive_budget(None, summarize(fresh, dataset.input_shape, 1), sparsity=args.sparsity)
    rows = []
    for spec in args.methods:
        dense, pruned = [], []
        for _ in range(args.repeats):
            dense.append(timed_epoch(args, dataset, model_name, config, None, budget))
            pruned.append(timed_epoch(args, dataset, model_name, config, spec, budget))
        row = {"model": model_name, "method": spec, "dense": min(dense), "seconds": min(pruned)}
        row["ratio"] = row["seconds"] / row["dense"]
        rows.append(row)
        print(
            f"  {model_name} {spec}: {row['seconds']:.3f} s/epoch vs dense {row['dense']:.3f} "
            f"({row['ratio']:.2f}x)",
            file=sys.stderr,
        )
    return rows


def report(args, rows: list[dict]) -> str:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "# Training overhead of pruning reparameterisations",
        "",
        f"- command: `{command}`",
        f"- machine: {cpu_model()}, {platform.platform()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, "
        f"{torch.get_num_threads()} thread(s); other jobs share these CPUs, so ratios move by "
        "a few percent between runs",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- dataset {args.dataset}; {args.epochs} epochs; T = {args.timesteps}; batch "
        f"{args.batch_size}; fastest epoch (train + test pass) over {args.repeats} interleaved "
        "repeats of dense and reparameterised runs; target <= 1.10x",
        "",
        "| model | method | dense s/epoch | method s/epoch | x dense |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['method']} | {row['dense']:.3f} | {row['seconds']:.3f} "
            f"| {row['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, args.data_dir)
    rows = [row for model_name in args.models for row in time_model(args, dataset, model_name)]
    publish(report(args, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
