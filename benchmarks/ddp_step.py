"""DDP training step time: 2 processes (gloo, CPU) against 1, side by side in one run.

Both train the same model on the same data with the same *global* batch (``--batch-size``;
each of the 2 ranks takes half, neuroprune.train.distributed), one torch thread per process. The
test split is cut to one sample so the per-epoch evaluation (which every rank runs in full)
does not count. Per configuration the runs alternate ``--repeats`` times; the figure is the
fastest epoch's seconds per optimizer step (the estimate least disturbed by other load on a
shared machine), and the ratio is 1-process time / 2-process time (> 1: DDP is faster).
The process start, imports and rendezvous are not timed.

Example::

    python benchmarks/ddp_step.py --hidden 512,256 --epochs 3 --repeats 2 --out /tmp/ddp.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shlex
import sys

from common import machine, publish  # benchmarks/common.py

from neuroprune.train import distributed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", default="512,256", help="mlp hidden widths")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="also write the Markdown table here")
    return parser.parse_args(argv)


def step_seconds(hidden: tuple[int, ...], epochs: int, batch_size: int) -> dict:
    """Train the mlp on digits; the fastest epoch's seconds per optimizer step (one rank)."""
    import torch

    torch.set_num_threads(1)
    from neuroprune.data.datasets import load_dataset
    from neuroprune.models.zoo import build_model
    from neuroprune.train.loop import default_config, train

    with distributed.process_group("cpu"):
        data = load_dataset("digits")
        data = dataclasses.replace(data, x_test=data.x_test[:1], y_test=data.y_test[:1])
        model = build_model("mlp", data.input_shape, data.num_classes, hidden=hidden, seed=0)
        config = default_config("mlp", epochs=epochs, batch_size=batch_size, seed=0)
        result = train(model, data, config)
        steps = distributed.steps_per_epoch(len(data.y_train), batch_size)
        fastest = min(row["seconds"] for row in result.history)
        return {
            "seconds_per_step": fastest / steps,
            "steps": steps,
            "world": distributed.world_size(),
        }


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    hidden = tuple(int(w) for w in args.hidden.split(","))
    runs: dict[int, list[float]] = {1: [], 2: []}
    steps = {}
    for _ in range(args.repeats):
        one = step_seconds(hidden, args.epochs, args.batch_size)
        two = distributed.run_function(2, step_seconds, hidden, args.epochs, args.batch_size)[0]
        runs[1].append(one["seconds_per_step"])
        runs[2].append(two["seconds_per_step"])
        steps = {1: one["steps"], 2: two["steps"]}
    best = {n: min(times) for n, times in runs.items()}
    command = "python benchmarks/ddp_step.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        f"DDP step time, mlp 64-{args.hidden.replace(',', '-')}-10 on digits, global batch "
        f"{args.batch_size}, T=8, {args.epochs} epochs x {args.repeats} alternating repeats "
        f"({datetime.date.today()}).",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine(threads=1)}",
        "",
        "| processes | steps/epoch | fastest s/step | all repeats (s/step) |",
        "|---|---|---|---|",
    ]
    for n in (1, 2):
        all_runs = ", ".join(f"{t:.4f}" for t in runs[n])
        lines.append(f"| {n} | {steps[n]} | {best[n]:.4f} | {all_runs} |")
    lines += ["", f"Speed-up of 2 processes: {best[1] / best[2]:.2f}x (1-process / 2-process)."]
    return publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
