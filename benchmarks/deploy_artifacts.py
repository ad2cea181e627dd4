"""Agreement of the vendor artifacts (issue 26) with the trained model and the reference
emulation, and the size of a netx file against its dense layout.

For each run directory (made by ``neuroprune fit``): a Loihi run's netx file is loaded by
lava-dl's own ``netx.hdf5.Network`` and run in Lava fixed point (``--backend netx``); a
SpiNNaker run's PyNN script runs unchanged on NEST (``--backend pynn``, float) after
``pyNN.mock``. Each runs the whole test split; reported: per layer the fraction of samples
whose spike counts are identical to the reference emulation's (the chip's arithmetic in
numpy) and to the trained quantized model's (PyTorch, the chip's arithmetic), prediction
agreement, and the accuracy of the three. For Loihi runs also the netx file's bytes, compressed
(what neuroprune writes) and in netx's dense layout, and the bytes its weight datasets store.

    python benchmarks/deploy_artifacts.py runs/demo runs/conv runs/spinn
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import machine

from neuroprune.chip.profiles import load_profile
from neuroprune.data.datasets import load_dataset
from neuroprune.pipeline.config import event_options
from neuroprune.pipeline.deploy import NETX, deploy_format_for
from neuroprune.run.rundir import RunDir
from neuroprune.sim import simulate
from neuroprune.sim.netx_file import write_netx
from neuroprune.sim.spec import read_deployment


def _saved_config(rundir):
    from neuroprune.pipeline.commands import saved_config

    return saved_config(rundir)


def one_run(run: Path) -> None:
    rundir = RunDir(run)
    cfg = _saved_config(rundir)
    profile = load_profile(rundir.profile_path)
    fmt = deploy_format_for(profile.neuron.arithmetic)
    data = load_dataset(cfg.dataset, cfg.data_dir, event_options(cfg))
    nir = rundir.model_file("nir")
    x, y = data.x_test, data.y_test
    model = rundir.final_model()
    reference = simulate(nir, x=x, y=y, profile=profile, backend="reference", fixed_point=True)
    ran = simulate(
        nir,
        x=x,
        y=y,
        profile=profile,
        backend=fmt,
        fixed_point=True,
        expected_counts=reference.counts,
        reference_model=model,
    )
    print(f"## {run.name}: {profile.name}, backend {fmt}, {ran.samples} test samples")
    print(f"verification: {ran.verification.kind}")
    for name, vs_ref, vs_model in zip(
        ran.layer_names, ran.layer_agreement, ran.model_agreement, strict=True
    ):
        print(
            f"  {name}: identical counts vs reference {100 * vs_ref:.2f} % of samples, "
            f"vs trained model {100 * vs_model:.2f} %"
        )
    print(
        f"  prediction agreement vs reference {100 * ran.prediction_agreement:.2f} %, "
        f"vs trained model {100 * ran.model_prediction_agreement:.2f} %"
    )
    print(
        f"  accuracy: {fmt} {100 * ran.accuracy:.2f} %, reference {100 * reference.accuracy:.2f}"
        f" %, trained model {100 * ran.model_accuracy:.2f} %; {1000 * ran.seconds_per_sample:.1f}"
        " ms/sample"
    )
    if fmt == NETX:
        spec = read_deployment(nir)
        with tempfile.TemporaryDirectory() as folder:
            packed = write_netx(spec, Path(folder) / "c.netx")
            plain = write_netx(spec, Path(folder) / "d.netx", compress=False)
        kept = sum(k for _, _, k in packed.layers)
        print(
            f"  netx file {packed.bytes:,} B (dense layout {plain.bytes:,} B); weights stored "
            f"{packed.weight_bytes:,} B for {kept:,} kept synapses (dense "
            f"{plain.dense_weight_bytes:,} B); per layer kept: "
            + ", ".join(f"{kind} {k:,}" for kind, _, k in packed.layers)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(machine())
    for run in args.runs:
        one_run(run)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
