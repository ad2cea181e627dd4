"""Synaptic operations per sample: neuroprune's count against SpikingJelly 2's SynOpCounter.

For a run directory made by ``neuroprune fit`` (the demo: ``neuroprune fit --chip loihi --cores 1
--hidden 512,256 --backend reference --out runs --name demo``), the pruned + quantized model
(``quantized.pt`` and the run's ``model.nir``) and the dense model (``dense.pt``, exported here)
are run on the whole test split and their SynOps per sample counted, per synaptic layer:

* **neuroprune** (``neuroprune.sim.result.synops_per_layer``, the figure ``simulate`` reports):
  the reference simulator's spike counts of the NIR file; per layer ``sum_j e_j * nnz_out_j``,
  ``e_j`` the events into input ``j`` over the ``T`` steps (spikes; for analog ``direct`` input
  the steps where the pixel is nonzero) and ``nnz_out_j`` its **nonzero** outgoing weights.
* **SpikingJelly 2** ``op_counter.SynOpCounter`` under ``DispatchCounterMode`` on the torch
  model: per ``aten.mm``/``convolution`` whose input is binary, ``spikes x out_features`` (every
  weight, zeros included; a conv counts every in-bounds kernel position), and **0** when neither
  operand is binary (the analog first layer: ``op_counter/ac.py`` ``_spike_mm``, the final
  ``else: return 0``). ``MACCounter`` counts that layer instead, densely: ``T x in x out``.
* **SpikingJelly 2, aligned**: the same ``SynOpCounter`` on each synaptic layer's recorded input
  made binary (``x != 0``) times the layer's **nonzero mask** (``w != 0``): with both operands
  binary it counts ``out.sum()`` (``ac.py`` ``_spike_mm``/``_spike_convolution``), i.e.
  ``sum_j e_j * nnz_out_j``, neuroprune's definition (``tests/synops_oracle.py``).

Layers are matched in order (a chain: the model's Linear/Conv2d modules and the file's layers).

The ratios are neuroprune / SpikingJelly. Both run the same spikes when the model and the
simulator agree (printed). ``--update-docs`` writes the result into docs/benchmarks.md between
this script's markers (appended when they are absent).

    python benchmarks/synops.py runs/demo --update-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from common import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synops_oracle import spikingjelly_synops, synaptic_modules  # noqa: E402

from neuroprune.data.datasets import load_dataset  # noqa: E402
from neuroprune.data.encoding import encode  # noqa: E402
from neuroprune.export import export_nir  # noqa: E402
from neuroprune.run.artifacts import load_model  # noqa: E402
from neuroprune.sim import simulate  # noqa: E402
from neuroprune.sim.inputs import prepare_stimulus  # noqa: E402
from neuroprune.sim.result import synops_per_layer  # noqa: E402
from neuroprune.sim.spec import read_deployment  # noqa: E402

BEGIN = "<!-- benchmarks/synops.py: begin -->"
END = "<!-- benchmarks/synops.py: end -->"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def neuroprune_counts(nir_path: Path, model, x: np.ndarray, fixed: bool) -> dict:
    """neuroprune's SynOps per layer from the reference simulator's counts of ``nir_path``, its
    total as ``simulate`` reports it, and whether those counts equal the model's."""
    result = simulate(nir_path, x=x, backend="reference", fixed_point=fixed, reference_model=model)
    spec = read_deployment(nir_path)
    stimulus = prepare_stimulus(spec, x, fixed_point=fixed)
    return {
        "layers": list(synops_per_layer(spec, stimulus, result.counts)),
        "total": result.synops_per_sample,
        "names": [layer.name for layer in spec.layers],
        "agreement": result.spike_agreement,
        "mode": result.mode,
    }


def rows(label: str, ours: dict, theirs: dict) -> list[str]:
    """Markdown rows: per layer and total."""
    ratio = lambda a, b: f"{a / b:.4f}" if b else "–"  # noqa: E731
    out = []
    for k, name in enumerate(ours["names"]):
        a, s, m, al = (
            ours["layers"][k],
            theirs["synops"][k],
            theirs["macs"][k],
            theirs["aligned"][k],
        )
        out.append(
            f"| {label} | {name} | {a:,.1f} | {s:,.1f} | {ratio(a, s)} | {m:,.0f} | {al:,.1f} "
            f"| {ratio(a, al)} |"
        )
    total = [sum(theirs[key]) for key in ("synops", "macs", "aligned")]
    out.append(
        f"| {label} | **total** | **{ours['total']:,.1f}** | **{total[0]:,.1f}** "
        f"| {ratio(ours['total'], total[0])} | {total[1]:,.0f} | {total[2]:,.1f} "
        f"| {ratio(ours['total'], total[2])} |"
    )
    return out


def measure(run: Path, mode: str, tmp: Path) -> tuple[list[str], list[str]]:
    """Table rows and notes for the run's quantized and dense models."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg = cfg.get("config", cfg)
    report = (
        json.loads((run / "report.json").read_text()) if (run / "report.json").is_file() else {}
    )
    sim = report.get("simulation") or {}
    data = load_dataset(cfg.get("dataset", "digits"))
    steps = int(cfg.get("timesteps") or 8)
    encoding = cfg.get("encoding", "direct")
    x = encode(data.x_test, steps, encoding, seed=0)
    fixed = (sim.get("mode") == "fixed") if mode == "auto" else mode == "fixed"
    table, notes = [], []
    for label, file, nir_file, fixed_point in (
        ("pruned + quantized", "quantized.pt", run / "model.nir", fixed),
        ("dense", "dense.pt", None, False),
    ):
        model = load_model(run / file)[0].eval()
        if nir_file is None:
            nir_file = export_nir(
                model,
                tmp / f"{file}.nir",
                timesteps=steps,
                encoding=encoding,
                input_shape=data.input_shape,
            )
        begin = time.perf_counter()
        ours = neuroprune_counts(nir_file, model, x, fixed_point)
        totals = spikingjelly_synops(model, x)  # integers over all samples and steps
        theirs = {key: [v / x.shape[1] for v in values] for key, values in totals.items()}
        exact = max(
            abs(round(a * x.shape[1], 6) - b)
            for a, b in zip(ours["layers"], totals["aligned"], strict=True)
        )
        table += rows(label, ours, theirs)
        zeros = theirs["zero_synapses"]
        nonzero = [int(torch.count_nonzero(m.weight)) for _, m in synaptic_modules(model)]
        dense = [m.weight.numel() for _, m in synaptic_modules(model)]
        notes.append(
            f"{label} ({file}, {ours['mode']} reference simulation of "
            f"{'model.nir' if file == 'quantized.pt' else 'its export'}): simulator spike counts "
            f"identical to the torch model's on {100 * ours['agreement']:.2f} % of samples "
            f"(minimum over layers); nonzero / all weights per layer "
            f"{', '.join(f'{n:,}/{d:,}' for n, d in zip(nonzero, dense, strict=True))}; "
            f"SpikingJelly's dense count beyond neuroprune's on the spike-driven layers = uses "
            f"of zero weights per sample "
            f"{', '.join(f'{z:,.1f}' for z, n in zip(zeros, theirs['synops'], strict=True) if n)}"
            f"; largest "
            f"|neuroprune - aligned| per layer over all samples: {exact:g} operations; "
            f"{time.perf_counter() - begin:.1f} s"
        )
    if sim.get("synops_per_sample") is not None:
        notes.append(
            f"the run's own report.json: simulation.synops_per_sample = "
            f"{sim['synops_per_sample']:,.1f} ({sim.get('backend')}, {sim.get('mode')})"
        )
    return table, notes


def section(command: str, run: Path, table: list[str], notes: list[str]) -> str:
    header = (
        "| model | layer | neuroprune | SJ2 SynOpCounter | neuroprune / SJ2 | SJ2 MACCounter "
        "| SJ2 SynOpCounter on nonzero synapses (aligned) | neuroprune / aligned |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    return "\n".join(
        [
            BEGIN,
            f"Command: `{command}` (run `{run.name}`, all test samples). Machine: {machine(1)}.",
            "",
            header,
            *table,
            "",
            *[f"- {n}" for n in notes],
            END,
        ]
    )


def update_docs(text: str, path: Path = DOCS) -> None:
    """Replace the text between this script's markers in ``path``, or append a section."""
    from neuroprune.core.atomic import write_text

    doc = path.read_text()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + text + rest.split(END, 1)[1]
    else:
        doc = (
            doc.rstrip("\n") + "\n\n## SynOps: neuroprune against SpikingJelly 2\n\n" + text + "\n"
        )
    write_text(path, doc)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (neuroprune fit --out/--name)")
    parser.add_argument(
        "--mode",
        choices=("auto", "fixed", "float"),
        default="auto",
        help="simulation mode of the quantized model (auto: the run's report.json)",
    )
    parser.add_argument("--update-docs", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = "python benchmarks/synops.py " + " ".join(argv)
    with tempfile.TemporaryDirectory() as tmp:
        table, notes = measure(args.run, args.mode, Path(tmp))
    text = section(command, args.run, table, notes)
    print(text)
    if args.update_docs:
        update_docs(text)


if __name__ == "__main__":
    main(sys.argv[1:])
