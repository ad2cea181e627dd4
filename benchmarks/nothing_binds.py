"""`neuroprune fit --chip loihi` with no allocation, before and after the nothing-binds skip,
side by side on one machine: wall and CPU time of the whole command, and where the time goes.

"Before" is a checkout of the commit before the skip (``git log -S "nothing to prune"``: the
parent of fab48e2), "after" the current tree; both run as ``python -m neuroprune`` from the same
interpreter with ``PYTHONPATH`` pointing at their checkout, alternately (before, after,
before, ...), so load on the machine falls on both alike. Per stage, the seconds between
log.txt's time stamps (1 s resolution); ``imports`` is ``python -X importtime`` of what a fit
imports on its way (sklearn for digits, torch.optim's first ``add_param_group`` pulling
``torch._dynamo``, matplotlib), measured once on the after tree.

Example::

    git worktree add --detach ../before fab48e2^
    python benchmarks/nothing_binds.py --before ../before --repeats 2 --out nothing_binds.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, publish  # noqa: E402  (benchmarks/common.py)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["fit", "--chip", "loihi", "--hidden", "512,256", "--backend", "reference"]
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d) (\w+): ")


def run_once(tree: Path, out: Path, name: str, python: str) -> dict[str, float]:
    """One fit of ``tree`` under interpreter ``python``: wall, CPU (user + system of the
    child) and seconds per stage."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, clock = time.perf_counter(), time.time()
    argv = [python, "-m", "neuroprune", *DEMO, "--out", str(out), "--name", name]
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, cwd=out)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stages = stage_seconds(out / name / "log.txt", clock, clock + wall)
    return {"wall": wall, "cpu": cpu, **stages}


def stage_seconds(log: Path, start: float, end: float) -> dict[str, float]:
    """Seconds from each stage's first log line to the next stage's first line; ``start`` ->
    the first line (imports, data, model: before anything is logged) and the last stage's
    first line -> ``end`` (both wall-clock ``time.time()``), as ``startup`` and ``stage
    report`` (which then includes the interpreter's exit)."""
    firsts: list[tuple[str, int]] = []
    for line in log.read_text().splitlines():
        match = STAMP.match(line)
        if not match:
            continue
        h, m, s, stage = match.groups()
        seconds = int(h) * 3600 + int(m) * 60 + int(s)
        if not firsts or firsts[-1][0] != stage:
            firsts.append((stage, seconds))
    midnight = datetime.datetime.fromtimestamp(start).replace(hour=0, minute=0, second=0)
    base = midnight.timestamp()
    ends = [t for _, t in firsts[1:]] + [(end - base) % 86400]
    out: dict[str, float] = {"startup": max(0.0, firsts[0][1] - (start - base) % 86400)}
    for (stage, first), last in zip(firsts, ends, strict=True):
        out[f"stage {stage}"] = out.get(f"stage {stage}", 0.0) + (last - first) % 86400
    return out


def import_seconds(tree: Path, module: str) -> float:
    """Seconds ``python -X importtime -c 'import MODULE'`` reports for ``module`` (cumulative)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    last = [line for line in proc.stderr.splitlines() if line.rstrip().endswith(f"| {module}")]
    return int(last[-1].split("|")[1]) / 1e6 if last else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of fab48e2^")
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument(
        "--before-python",
        default=sys.executable,
        help="interpreter for the before tree (its own environment: a checkout from before "
        "the move to Python 3.12 needs the 3.10 stack it was built for)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="write the Markdown result here too")
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeats):
            for label, tree, python in (
                ("before", args.before, args.before_python),
                ("after", args.after, sys.executable),
            ):
                rows[label].append(run_once(tree.resolve(), Path(folder), f"{label}{i}", python))
                print(label, {k: round(v, 1) for k, v in rows[label][-1].items()}, flush=True)
    keys = sorted({k for runs in rows.values() for r in runs for k in r}, key=_order)
    lines = [
        f"Command: `neuroprune {shlex.join(DEMO)}` (digits, no --cores/--budget/--sparsity); "
        f"`python benchmarks/nothing_binds.py {shlex.join(sys.argv[1:])}`, "
        f"{datetime.date.today()}.",
        "",
        f"Machine: {machine(1)}. Interpreters: before `{args.before_python}`, after "
        f"`{sys.executable}`.",
        "",
        "| median of runs | before | after | after / before |",
        "|---|---|---|---|",
    ]
    for key in keys:
        b = statistics.median(r.get(key, 0.0) for r in rows["before"])
        a = statistics.median(r.get(key, 0.0) for r in rows["after"])
        ratio = f"{a / b:.2f}" if b else "—"
        lines.append(f"| {key} | {b:.1f} s | {a:.1f} s | {ratio} |")
    walls = [
        f"{label} " + ", ".join(f"{r['wall']:.1f}" for r in runs) for label, runs in rows.items()
    ]
    lines += ["", "Runs (wall s): " + "; ".join(walls)]
    modules = ("torch", "sklearn.model_selection", "torch._dynamo", "matplotlib.pyplot")
    times = ", ".join(f"{m} {import_seconds(args.after, m):.2f} s" for m in modules)
    lines += ["", f"Imports on their own (after tree, `-X importtime`, cumulative): {times}."]
    publish("\n".join(lines) + "\n", args.out)


def _order(key: str) -> tuple[int, str]:
    order = [
        "wall",
        "cpu",
        "startup",
        "stage setup",
        "stage dense",
        "stage prune",
        "stage quantize",
    ]
    return (order.index(key) if key in order else len(order), key)


if __name__ == "__main__":
    main()
