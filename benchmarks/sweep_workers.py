"""Sweep wall time on the embedded local Ray: 1 worker against 2, side by side in one run.

The same sweep (chips x methods x sparsities, the fit options below) runs into fresh folders
with ``--workers 1`` and ``--workers 2`` (alternating, ``--repeats`` times). The wall time
covers planning (validation), Ray's start and shutdown, and every trial. The ratio is
1-worker time / 2-worker time (> 1: two workers are faster).

Example::

    python benchmarks/sweep_workers.py --chips loihi,truenorth --methods gmp,magnitude \\
        --sparsities 0.8 --out /tmp/sweep_workers.md
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
import time

from common import machine, publish  # benchmarks/common.py

from neuroprune.pipeline.config import RunConfig
from neuroprune.sweep.plan import plan_sweep
from neuroprune.sweep.run import run_sweep


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chips", default="loihi,truenorth")
    parser.add_argument("--methods", default="gmp,magnitude")
    parser.add_argument("--sparsities", default="0.8")
    parser.add_argument("--hidden", default="64")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--prune-epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", help="also write the Markdown table here")
    return parser.parse_args(argv)


def timed_sweep(args: argparse.Namespace, workers: int) -> tuple[float, int]:
    """Wall seconds of one sweep into a fresh folder, and the trials that finished."""
    folder = tempfile.mkdtemp(prefix="np-sweep-bench-")
    base = RunConfig(
        out=folder,
        hidden=args.hidden,
        epochs=args.epochs,
        prune_epochs=args.prune_epochs,
        finetune_epochs=1,
        quant_epochs=1,
        backend="reference",
        samples=100,
    )
    start = time.perf_counter()
    plan = plan_sweep(
        chips=args.chips,
        methods=args.methods,
        sparsities=args.sparsities,
        base=base,
        workers=workers,
    )
    result = run_sweep(plan)
    return time.perf_counter() - start, sum(r["status"] == "done" for r in result.rows)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    times: dict[int, list[float]] = {1: [], 2: []}
    trials = 0
    for _ in range(args.repeats):
        for workers in (1, 2):
            seconds, trials = timed_sweep(args, workers)
            times[workers].append(seconds)
    best = {n: min(t) for n, t in times.items()}
    command = "python benchmarks/sweep_workers.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        f"Sweep wall time on the embedded local Ray, {trials} trials ({args.chips} x "
        f"{args.methods} x sparsity {args.sparsities}; mlp 64-{args.hidden}-10 on digits, "
        f"{args.epochs}+{args.prune_epochs}+1+1 epochs, reference simulation of 100 samples) "
        f"({datetime.date.today()}).",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine(threads=1)}",
        "",
        "| workers | wall time (s), fastest | all repeats (s) |",
        "|---|---|---|",
    ]
    for n in (1, 2):
        lines.append(f"| {n} | {best[n]:.1f} | {', '.join(f'{t:.1f}' for t in times[n])} |")
    lines += ["", f"Speed-up of 2 workers: {best[1] / best[2]:.2f}x (1-worker / 2-worker)."]
    return publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
