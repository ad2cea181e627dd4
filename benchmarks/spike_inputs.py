"""Input encodings end to end: ``fit`` on digits with direct, poisson and latency encoding.

For each encoding one ``neuroprune fit`` run with the same options (default: the demo's
``--chip loihi --cores 1 --hidden 512,256``, Lava fixed point on the whole test split) in one
process, one after another. Printed per encoding: dense / pruned / quantized test accuracy,
where the first synaptic layer ran (host or chip), Lava's spike agreement with the bit-exact
emulation, Lava ms per sample and the synaptic operations per sample.

Example::

    python benchmarks/spike_inputs.py --out /tmp/spike-inputs
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import machine  # noqa: E402  (benchmarks/common.py)

from neuroprune.pipeline.config import resolve_config
from neuroprune.pipeline.run import run_fit

ENCODINGS = ("direct", "poisson", "latency")


def fit(encoding: str, out: str, extra: dict) -> dict:
    options = {
        "chip": "loihi",
        "cores": 1,
        "hidden": "512,256",
        "encoding": encoding,
        "out": out,
        "name": encoding,
        **extra,
    }
    return run_fit(resolve_config(None, options)).report


def row(encoding: str, report: dict) -> str:
    sim = report["simulation"] or {}
    pct = lambda v: "–" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    return (
        f"| {encoding} | {pct(report['dense']['accuracy'])} | {pct(report['pruned']['accuracy'])}"
        f" | {pct(report['quantized']['accuracy'])} | {sim.get('placement', {}).get('l00_1_syn')}"
        f" | {pct(sim.get('spike_agreement'))} | {1000 * sim.get('seconds_per_sample', 0):.2f}"
        f" | {sim.get('synops_per_sample', 0):,.0f} |"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="parent folder of the runs (default: temp)")
    parser.add_argument("--epochs", type=int, default=None, help="dense epochs (default: model's)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="spike-inputs-")
    extra = {"epochs": args.epochs} if args.epochs else {}
    print(machine())
    print(
        "| encoding | dense | pruned | quantized | first synapses on | Lava agreement | ms/sample "
        "| synops/sample |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for encoding in ENCODINGS:
        print(row(encoding, fit(encoding, out, extra)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
