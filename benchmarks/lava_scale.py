"""Benchmark: Lava ms/sample and peak memory against synapses (100 k to 2 M), before and after.

Each network is a 64-H-H-10 LIF chain (tau 2, threshold 1) with 10 % of its weights nonzero,
drawn at random (seed 0, weights N(0, 1) x 3 / sqrt(fan-in), so every layer spikes) - the
size of the issue's "mlp pruned to 90 %" rows; no training is needed to time a simulator.
The same N random analog inputs (direct encoding, T = 8) are simulated in float mode.

Every row runs twice, side by side in one invocation: once with this checkout's code and once
with another checkout's (``--before ROOT``, e.g. main's before the change), each in a child
process whose ``PYTHONPATH`` is that root. The parent polls the summed PSS (proportional set
size, so shared pages count once) of the child's whole process tree (Lava worker and its
forked process models included) every 50 ms; ``ms/sample`` is the backend call's wall time
(worker start, Lava import, build, compile, run, stop) divided by N. The two runs' spike
counts are compared neuron by neuron. The growth exponent is the least-squares slope of
log(ms/sample) against log(synapses). "steps-only" (this checkout only) is the worker's time
for the simulated steps after the first (which also compiles and starts the processes).

Usage::

    PYTHONPATH=. python benchmarks/lava_scale.py --before /work/main --samples 64
    PYTHONPATH=. python benchmarks/lava_scale.py --hidden 1024 2048 --samples 16   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine  # noqa: E402  (benchmarks/common.py)

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = (1024, 1448, 2048, 2896, 4440)  # about 0.11, 0.22, 0.43, 0.85, 2.0 M synapses
DENSITY = 0.1
POLL_S = 0.05


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--density", type=float, default=DENSITY, help="nonzero weight fraction")
    parser.add_argument("--loihi-cores", action="store_true", help="also pack each net on Loihi")
    parser.add_argument("--before", type=Path, help="checkout root of the code to compare with")
    parser.add_argument("--child", nargs=2, metavar=("HIDDEN", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def random_spec(hidden: int, timesteps: int, seed: int = 0, density: float = DENSITY):
    """The 64-H-H-10 chain described in the module docstring (torch-free spec)."""
    import scipy.sparse as sp

    from neuroprune.sim.spec import DeploymentSpec, LayerNeurons, LayerSpec

    rng = np.random.default_rng(seed)
    sizes = (64, hidden, hidden, 10)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        weight = sp.random(n_out, n_in, density=density, random_state=rng, format="csr")
        weight.data = rng.normal(0.0, 1.0, weight.nnz) * 3.0 / np.sqrt(density * n_in)
        neuron = LayerNeurons("LIF", 1.0, 2.0, True)
        shape_in, shape_out = (n_in,), (n_out,)
        layers.append(
            LayerSpec(f"{i}_syn", f"{i}_neuron", "dense", shape_in, shape_out, weight, None, neuron)
        )
    return DeploymentSpec(tuple(layers), (64,), 2**-10, timesteps, "direct")


def child(hidden: int, out: Path, args) -> None:
    """Simulate one network with the code on ``sys.path``; write timings and counts."""
    from neuroprune.sim.inputs import prepare_stimulus
    from neuroprune.sim.lava_backend import LavaBackend

    samples = args.samples
    spec = random_spec(hidden, args.timesteps, density=args.density)
    x = np.random.default_rng(1).random((samples, 64))
    stimulus = prepare_stimulus(spec, x)
    begin = time.perf_counter()
    run = LavaBackend().run(spec, stimulus, fixed_point=False, timeout=3600)
    wall = time.perf_counter() - begin
    np.savez(out.with_suffix(".npz"), *run.counts)
    summary = {
        "synapses": sum(layer.synapses for layer in spec.layers),
        "loihi_cores": loihi_cores(spec) if args.loihi_cores else None,
        "wall": wall,
        "timings": run.timings,
        "notes": list(run.notes),
    }
    out.write_text(json.dumps(summary))


def loihi_cores(spec) -> int:
    """Cores neuroprune's Loihi packing needs for the spec's layers at 8-bit weights."""
    from neuroprune.chip.profiles import load_profile
    from neuroprune.core.summary import LayerSummary, NetworkSummary
    from neuroprune.fit.packing import pack

    layers = tuple(
        LayerSummary(
            name=layer.name,
            kind="dense",
            in_shape=layer.in_shape,
            out_shape=layer.out_shape,
            connectivity=(layer.weight != 0).tocsr(),
            kernel_nonzeros=layer.synapses,
            kernel_entries=layer.inputs * layer.neurons,
            weight_bits=8,
        )
        for layer in spec.layers
    )
    return len(pack(NetworkSummary(layers, spec.input_shape, 8), load_profile("loihi")).cores)


def tree_pss_kb(root: int) -> int:
    """Summed PSS (kB) of ``root`` and all its descendants, from /proc (Linux)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
            except OSError:
                continue
    tree, frontier = [root], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        tree.extend(frontier)
    return sum(_pss_kb(pid) for pid in tree)


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(root: Path, hidden: int, args, workdir: Path) -> dict:
    """Run the child with ``root`` on PYTHONPATH; its summary plus peak PSS (MB) and counts."""
    out = workdir / f"{root.name}-{hidden}.json"
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    command = [sys.executable, __file__, "--child", str(hidden), str(out)]
    command += ["--samples", str(args.samples), "--timesteps", str(args.timesteps)]
    command += ["--density", str(args.density)] + (["--loihi-cores"] if args.loihi_cores else [])
    proc = subprocess.Popen(command, env=env, cwd=root)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss_kb(proc.pid))
        time.sleep(POLL_S)
    if proc.returncode != 0:
        raise SystemExit(f"child failed for {root} H={hidden} (exit {proc.returncode})")
    summary = json.loads(out.read_text())
    with np.load(out.with_suffix(".npz")) as data:
        summary["counts"] = [data[key] for key in sorted(data.files)]
    summary["peak_mb"] = peak / 1024
    return summary


def exponent(synapses: list[int], ms: list[float]) -> float:
    """Least-squares slope of log(ms) against log(synapses)."""
    return float(np.polyfit(np.log(synapses), np.log(ms), 1)[0])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        child(int(args.child[0]), Path(args.child[1]), args)
        return 0
    roots = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    rows, series, steps = [], {name: ([], []) for name, _ in roots}, ([], [])
    with tempfile.TemporaryDirectory(prefix="lava-scale-") as tmp:
        for hidden in args.hidden:
            results = {name: measure(root, hidden, args, Path(tmp)) for name, root in roots}
            rows.append(_row(hidden, results, args.samples))
            for name, result in results.items():
                series[name][0].append(result["synapses"])
                series[name][1].append(1000 * result["wall"] / args.samples)
            steps[0].append(results["after"]["synapses"])
            steps[1].append(_steps_ms(results["after"], args.samples))
            print(rows[-1], flush=True)
    print(f"\nCommand: `PYTHONPATH=. python benchmarks/lava_scale.py {' '.join(sys.argv[1:])}`")
    print(f"Machine: {machine()}\n")
    names = [name for name, _ in roots]
    header = ["H", "synapses"] + (["Loihi cores"] if args.loihi_cores else [])
    for name in names:
        header += [f"{name} ms/sample", f"{name} peak MB", f"{name} networks"]
    if len(names) > 1:
        header += ["speed-up", "identical counts"]
    header += ["after steps-only ms/sample"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print(row)
    for name in names:
        if len(series[name][0]) > 1:
            print(f"\n{name}: growth exponent {exponent(*series[name]):.2f}")
    if len(steps[0]) > 1:
        print(f"\nafter, steps only: growth exponent {exponent(*steps):.2f}")
    return 0


def _steps_ms(result: dict, samples: int) -> float:
    """The simulated steps alone (after the first, which also compiles): ms per sample."""
    return 1000 * result["timings"]["run"] / samples


def _row(hidden: int, results: dict, samples: int) -> str:
    after = results["after"]
    cells = [str(hidden), f"{after['synapses']:,}"]
    if after.get("loihi_cores") is not None:
        cells.append(str(after["loihi_cores"]))
    for result in results.values():
        ms = 1000 * result["wall"] / samples
        networks = result["notes"][0].split(":")[1].split(" network")[0].strip()
        cells += [f"{ms:.1f}", f"{result['peak_mb']:.0f}", networks]
    if "before" in results:
        before = results["before"]
        same = all(
            np.array_equal(a, b) for a, b in zip(after["counts"], before["counts"], strict=True)
        )
        cells += [f"{before['wall'] / after['wall']:.1f}x", "yes" if same else "NO"]
    cells.append(f"{_steps_ms(after, samples):.1f}")
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
