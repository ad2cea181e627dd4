"""Agreement of neuroprune's .nir files in snnTorch, Norse, Sinabs and SpikingJelly 2 with
neuroprune's model.

For each run directory given (made by ``neuroprune fit``), the dense model (``dense.pt``) and
the pruned + quantized model (``quantized.pt``) are exported to NIR (default ``dt = 2**-10``
and ``dt = 1e-4``), imported with each tool's own importer (``tests/interop_runners.py``) and
run on the whole test split. Reported per importer x model: the fraction of samples whose
output spike counts are identical to the SpikingJelly model's, the fraction of (sample, output
neuron) counts that are, the output spikes that differ (sum of |count difference|) against the
model's total, and the fraction of samples whose predictions (argmax of counts, first index on
ties) agree. Sinabs runs in its test environment (nir 1.0.4, ``make test-envs``), in a child
process per file (``interop_runners.sinabs_run``), reading the file written here on the tool's
nir; a line after the table gives the versions the child saw. SpikingJelly 2 (which fires on
``v >= v_th``) also runs the file with every threshold moved to the next float32 (``strict_thresholds``: ``>=`` then fires exactly where
NIR's ``>`` does), which isolates the cause of any difference. Each run's own encoding and
chip are used (a Speck run: latency spikes, its quantized model exported for ``speck``, whose
IF layers Sinabs' importer reads as Speck's neuron).

    python benchmarks/nir_interop.py runs/bench-mlp runs/bench-conv [--tools spikingjelly]

Xylo (``--rockpool-xylo RUN``, a run fitted with ``--chip xylo``): the run's Xylo-target file
(``neuroprune export RUN --format rockpool-nir``) is read by Rockpool 3.1.0's NIR importer
(``rockpool.nn.modules.torch.nir.from_nir``, in the ``rockpool`` test environment), its
``as_graph()`` mapped by Rockpool's Xylo mapper, and the specification run in XyloSim
(``XyloSim.from_specification``, lava environment) on the run's test inputs: the readout's
counts against the trained quantized model's (``tests/xylo_oracle.py`` holds both children).

    python benchmarks/nir_interop.py --rockpool-xylo runs/xylo-64
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from common import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interop_runners import IMPORTERS, output_counts, sinabs_run, strict_thresholds  # noqa: E402

from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode  # noqa: E402
from neuroprune.export import export_nir  # noqa: E402
from neuroprune.run.artifacts import load_model  # noqa: E402
from neuroprune.sim.torch_reference import model_counts  # noqa: E402

DT_FOR = {"snntorch": 1e-4, "norse": None, "sinabs": None, "spikingjelly": None}
SINABS_SEEN: dict = {}  # the facts of the last Sinabs child that ran a file


def rows_for_run(run_dir: Path, tmp: Path, tools: tuple[str, ...]) -> list[str]:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = cfg.get("config", cfg)
    data = load_dataset(cfg.get("dataset", "digits"))
    steps = int(cfg.get("timesteps") or 8)
    encoding = cfg.get("encoding") or "direct"  # a Speck run takes latency/poisson spikes
    x = encode(data.x_test, steps, encoding)
    rows = []
    for label, file in (("dense", "dense.pt"), ("pruned+quantized", "quantized.pt")):
        model = load_model(run_dir / file)[0].eval()
        want = model_counts(model, x)[-1].astype(np.int64)
        for tool in tools:
            path = export_nir(
                model,
                tmp / f"{run_dir.name}-{file}-{tool}.nir",
                timesteps=steps,
                encoding=encoding,
                input_shape=data.input_shape,
                dt=DT_FOR[tool],
                chip=cfg.get("chip") if file == "quantized.pt" else None,
            )
            option = "--dt 1e-4" if DT_FOR[tool] else "default"
            variants = [(tool, path)]
            if tool == "spikingjelly":
                import nir

                variants.append((f"{tool}, v_th + 1 ulp", strict_thresholds(nir.read(str(path)))))
            for name, source in variants:
                model_name = f"{run_dir.name} {label} ({cfg.get('chip', '?')}, {encoding})"
                rows.append(_row(name, model_name, option, source, x, want))
    return rows


def _row(tool: str, model: str, option: str, source, x: np.ndarray, want: np.ndarray) -> str:
    begin = time.perf_counter()
    try:
        if tool == "sinabs":
            run = sinabs_run(source, x)
            got = run.counts
            SINABS_SEEN.update(run.facts)
        else:
            got = output_counts(tool.split(",")[0], source, x)
    except Exception as exc:  # an importer that cannot run the file: say so
        kind = getattr(exc, "kind", type(exc).__name__)  # Sinabs: the type raised in its env
        return f"| {tool} | {model} | {option} | error: {kind} | | | | |"
    samples = float(np.mean(np.all(got == want, axis=1)))
    counts = float(np.mean(got == want))
    differing = int(np.abs(got - want).sum())
    preds = float(np.mean(got.argmax(1) == want.argmax(1)))
    return (
        f"| {tool} | {model} | {option} | {samples:.4f} | {counts:.4f} "
        f"| {differing:,} / {int(want.sum()):,} | {preds:.4f} "
        f"| {time.perf_counter() - begin:.1f} |"
    )


ORACLE = Path(__file__).resolve().parents[1] / "tests" / "xylo_oracle.py"


def _child(env: str, *args: str) -> None:
    from neuroprune.envs import require

    python = require(env, what=f"the {env} environment (Rockpool NIR on Xylo)")
    done = subprocess.run(
        [str(python), str(ORACLE), *args], capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"{env} child failed: {done.stderr.strip().splitlines()[-1:]}")


def rockpool_xylo_row(run_dir: Path, tmp: Path) -> str:
    """Rockpool's importer -> mapper -> XyloSim on the run's rockpool-nir file, against the
    trained quantized model (module docstring)."""
    from neuroprune.pipeline.commands import export_run
    from neuroprune.sim.inputs import prepare_stimulus
    from neuroprune.sim.spec import read_deployment

    begin = time.perf_counter()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = cfg.get("config", cfg)
    data = load_dataset(cfg.get("dataset", "digits"))
    path = export_run(run_dir, "rockpool-nir", tmp / f"{run_dir.name}.rockpool.nir")
    stimulus = prepare_stimulus(read_deployment(run_dir / "model.nir"), data.x_test)
    model = load_model(run_dir / "quantized.pt")[0].eval()
    want = model_counts(model, stimulus.inputs)[-1].astype(np.int64)
    np.save(tmp / "frames.npy", stimulus.frames)
    _child("rockpool", "import-nir", str(path), str(tmp / "spec.npz"))
    _child("lava", "run-spec", str(tmp / "spec.npz"), str(tmp / "frames.npy"), str(tmp / "out.npy"))
    got = np.load(tmp / "out.npy")
    samples = float(np.mean(np.all(got == want, axis=1)))
    counts = float(np.mean(got == want))
    differing = int(np.abs(got - want).sum())
    preds = float(np.mean(got.argmax(1) == want.argmax(1)))
    return (
        f"| rockpool (from_nir -> Xylo mapper -> XyloSim) | {run_dir.name} pruned+quantized "
        f"| --format rockpool-nir | {samples:.4f} | {counts:.4f} "
        f"| {differing:,} / {int(want.sum()):,} | {preds:.4f} "
        f"| {time.perf_counter() - begin:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--tools", nargs="+", choices=IMPORTERS, default=IMPORTERS)
    parser.add_argument("--rockpool-xylo", nargs="+", type=Path, default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine(threads=1))
    print(
        "| importer | model | file | identical output counts (samples) "
        "| identical (sample, neuron) counts | output spikes differing / total "
        "| same prediction | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            for row in rows_for_run(run, Path(tmp), tuple(args.tools)):
                print(row, flush=True)
        for run in args.rockpool_xylo:
            print(rockpool_xylo_row(run, Path(tmp)), flush=True)
    if SINABS_SEEN:
        seen = SINABS_SEEN
        print(
            f"\nSinabs {seen['sinabs']} ran in {seen['prefix']} on nir {seen['nir']} "
            f"({seen['nir_file']}), reading files written by nir {seen['file_nir_version']}; "
            f"samna imported: {seen['samna_imported']}"
        )


if __name__ == "__main__":
    main()
