"""Benchmark driver: one benchmark under two Python stacks, alternating, one table.

Runs the *same* benchmark script of this checkout under an "old" and a "new" stack, each a
checkout root whose code is put on ``PYTHONPATH`` and an interpreter (by default the root's
``.venv/bin/python``; the new stack defaults to this checkout and this interpreter):

* ``--bench training``: ``benchmarks/training.py --child steps`` (training steps per second of
  neuroprune's conv and mlp and of plain SpikingJelly's conv, 28x28x1 and 32x32x3; see that
  file), one fresh child per stack and round;
* ``--bench neuron``: ``benchmarks/neuron.py --json`` (the fused strict LIF node alone against
  SpikingJelly's ``LIFNode``, training step and evaluation, milliseconds);
* ``--bench epoch``: ``benchmarks/training.py --child epoch`` (one epoch of
  ``neuroprune.train.loop.train`` of the zoo conv on ``--images`` random 28x28 images, batch
  32, T = 8, with its evaluation: seconds).

Rounds alternate the order of the stacks (old then new, new then old, ...), so slow phases of
a shared machine fall on both. Every child runs with ``OMP_NUM_THREADS=MKL_NUM_THREADS=1`` and
the benchmarks call ``torch.set_num_threads(1)``. The tables give per stack the median over
the rounds and the spread (min-max), the ratio of the medians new/old, and the ratios within
one stack (neuroprune against SpikingJelly in the same child, paired per round: median and
spread).

Usage::

    PYTHONPATH=. python benchmarks/stacks.py --old ../old310 --bench training --rounds 5
    PYTHONPATH=. python benchmarks/stacks.py --old ../old310 --bench neuron --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import publish  # noqa: E402  (benchmarks/common.py)

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
STACKS = ("old", "new")
# the training nets compared with plain SpikingJelly within one stack
BASELINE = "spikingjelly conv"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="checkout root of the old stack")
    parser.add_argument("--old-python", type=Path, help="default: OLD/.venv/bin/python")
    parser.add_argument("--new", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--new-python", type=Path, help="default: this interpreter")
    parser.add_argument("--bench", choices=("training", "neuron", "epoch"), default="training")
    parser.add_argument("--rounds", type=int, default=5, help="children per stack, alternating")
    parser.add_argument("--steps", type=int, default=5, help="training: steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="blocks (training) or calls")
    parser.add_argument("--images", type=int, default=2000, help="epoch: training images")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser.parse_args(argv)


def stacks(args) -> dict[str, tuple[Path, Path]]:
    """``{name: (root, interpreter)}``."""
    old = args.old.resolve()
    new = args.new.resolve()
    return {
        "old": (old, args.old_python or old / ".venv" / "bin" / "python"),
        "new": (new, args.new_python or Path(sys.executable)),
    }


def child_env(root: Path) -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=str(root),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )


def run_child(root: Path, python: Path, command: list[str]) -> str:
    out = subprocess.run(
        [str(python), *command],
        env=child_env(root),
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"child {command} failed under {python}:\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def bench_command(args) -> list[str]:
    if args.bench == "training":
        return [
            str(BENCHMARKS / "training.py"),
            "--child",
            "steps",
            "--steps",
            str(args.steps),
            "--repeats",
            str(args.repeats),
        ]
    if args.bench == "epoch":
        return [str(BENCHMARKS / "training.py"), "--child", "epoch", "--images", str(args.images)]
    return [str(BENCHMARKS / "neuron.py"), "--json", "--repeats", str(args.repeats)]


def machine_line(root: Path, python: Path) -> str:
    code = f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); "
    code += "from common import machine; print(machine(threads=1))"
    return run_child(root, python, ["-c", code])


def collect(args) -> tuple[dict, dict]:
    """``(machines, results)``; ``results[stack]`` is the list of the rounds' JSON objects."""
    where = stacks(args)
    machines = {name: machine_line(*where[name]) for name in STACKS}
    results: dict[str, list] = {name: [] for name in STACKS}
    command = bench_command(args)
    for round_ in range(args.rounds):
        order = STACKS if round_ % 2 == 0 else STACKS[::-1]
        for name in order:
            results[name].append(json.loads(run_child(*where[name], command)))
            print(f"round {round_ + 1}/{args.rounds} {name} done", file=sys.stderr, flush=True)
    return machines, results


def spread(values: list[float], digits: int = 2) -> str:
    """``median (min-max)``."""
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def training_tables(results: dict) -> list[str]:
    first = results["new"][0]
    lines = [
        "| net | input | old steps/s | new steps/s | new/old (medians) |",
        "|---|---|---|---|---|",
    ]
    for shape, nets in first.items():
        for net in nets:
            old = [r[shape][net] for r in results["old"]]
            new = [r[shape][net] for r in results["new"]]
            ratio = statistics.median(new) / statistics.median(old)
            lines.append(f"| {net} | {shape} | {spread(old)} | {spread(new)} | {ratio:.2f}x |")
    lines += ["", "Within one stack, paired per round: net / plain SpikingJelly conv (NCHW).", ""]
    lines += ["| net | input | old stack | new stack |", "|---|---|---|---|"]
    for shape, nets in first.items():
        for net in nets:
            if net == BASELINE or "conv" not in net:
                continue
            cells = [
                spread([r[shape][net] / r[shape][BASELINE] for r in results[name]]) + "x"
                for name in STACKS
            ]
            lines.append(f"| {net} | {shape} | " + " | ".join(cells) + " |")
    return lines


def neuron_tables(results: dict) -> list[str]:
    lines = [
        "| T, B, N | phase | stack | SpikingJelly ms | fused strict ms | SJ / fused (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for shape in results["new"][0]:
        for phase in ("train", "eval"):
            for name in STACKS:
                rows = [r[shape] for r in results[name]]
                sj = [r[f"sj_{phase}"] for r in rows]
                ours = [r[f"np_{phase}"] for r in rows]
                ratio = [r[f"sj_{phase}"] / r[f"np_{phase}"] for r in rows]
                lines.append(
                    f"| {shape} | {phase} | {name} | {spread(sj)} | {spread(ours)} | "
                    f"{spread(ratio)}x |"
                )
    return lines


def epoch_tables(results: dict, images: int) -> list[str]:
    old = [r["seconds"] for r in results["old"]]
    new = [r["seconds"] for r in results["new"]]
    speed_up = statistics.median(old) / statistics.median(new)
    return [
        "| measurement | old stack | new stack | old / new (medians) |",
        "|---|---|---|---|",
        f"| conv epoch, {images} images 28x28, s | {spread(old, 1)} | {spread(new, 1)} | "
        f"{speed_up:.2f}x |",
    ]


def tables(args, results: dict) -> list[str]:
    if args.bench == "training":
        return training_tables(results)
    if args.bench == "epoch":
        return epoch_tables(results, args.images)
    return neuron_tables(results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    machines, results = collect(args)
    lines = [
        f"Command: `PYTHONPATH=. python benchmarks/stacks.py {' '.join(sys.argv[1:])}`",
        "",
        *(f"- {name}: {machines[name]}" for name in STACKS),
        "",
        f"Medians over {args.rounds} rounds per stack (min-max in brackets).",
        "",
        *tables(args, results),
    ]
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
