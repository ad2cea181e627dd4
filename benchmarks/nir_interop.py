"""Agreement of neuroprune's .nir files in snnTorch, Norse and Sinabs with neuroprune's model.

For each run directory given (made by ``neuroprune fit``), the dense model (``dense.pt``) and
the pruned + quantized model (``quantized.pt``) are exported to NIR (default ``dt = 2**-10``
and ``dt = 1e-4``), imported with each tool's own importer (``tests/interop_runners.py``) and
run on the whole test split. Reported per importer x model: the fraction of samples whose
output spike counts are identical to the SpikingJelly model's, and whose predictions
(argmax of counts, first index on ties) agree.

    python benchmarks/nir_interop.py runs/bench-mlp runs/bench-conv
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from common import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interop_runners import IMPORTERS, output_counts  # noqa: E402

from neuroprune.data.datasets import load_dataset
from neuroprune.data.encoding import encode  # noqa: E402
from neuroprune.export import export_nir  # noqa: E402
from neuroprune.run.artifacts import load_model  # noqa: E402
from neuroprune.sim.torch_reference import model_counts  # noqa: E402

DT_FOR = {"snntorch": 1e-4, "norse": None, "sinabs": None}


def rows_for_run(run_dir: Path, tmp: Path) -> list[str]:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = cfg.get("config", cfg)
    data = load_dataset(cfg.get("dataset", "digits"))
    steps = int(cfg.get("timesteps") or 8)
    x = encode(data.x_test, steps)
    rows = []
    for label, file in (("dense", "dense.pt"), ("pruned+quantized", "quantized.pt")):
        model = load_model(run_dir / file)[0].eval()
        want = model_counts(model, x)[-1].astype(np.int64)
        for tool in IMPORTERS:
            path = export_nir(
                model,
                tmp / f"{run_dir.name}-{file}-{tool}.nir",
                timesteps=steps,
                encoding="direct",
                input_shape=data.input_shape,
                dt=DT_FOR[tool],
            )
            begin = time.perf_counter()
            try:
                got = output_counts(tool, path, x)
            except Exception as exc:  # an importer that cannot run the file: say so
                rows.append(
                    f"| {tool} | {run_dir.name} {label} | error: {type(exc).__name__} | | |"
                )
                continue
            counts = float(np.mean(np.all(got == want, axis=1)))
            preds = float(np.mean(got.argmax(1) == want.argmax(1)))
            option = "--dt 1e-4" if DT_FOR[tool] else "default"
            rows.append(
                f"| {tool} | {run_dir.name} {label} | {option} | {counts:.4f} | {preds:.4f} "
                f"| {time.perf_counter() - begin:.1f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine(threads=1))
    print("| importer | model | file | identical output counts | same prediction | s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            for row in rows_for_run(run, Path(tmp)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
