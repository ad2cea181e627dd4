"""Run NeuroBench 2.3.0's metrics on a neuroprune model, in the neurobench test environment.

NeuroBench pulls snnTorch, tonic, torchaudio and numba, so it lives in a layered test
environment of its own (``neuroprune.envs``, ``make test-envs``) that sees the tool
environment's packages (torch, SpikingJelly 2, numpy, numba) after its own. The parent
(:func:`neurobench_metrics`) saves the model with ``torch.save`` (the whole module: SpikingJelly
2 layers and neuroprune's neurons) and the inputs, then runs this file as a script with that
environment's interpreter and the repository root on ``PYTHONPATH`` (the child unpickles the
model with this checkout's neuroprune)::

    <neurobench python> tests/neurobench_runner.py MODEL.pt inputs.npy labels.npy [--threads K]

The child measures with NeuroBench's own code only: ``neurobench.benchmarks.Benchmark`` with
the static metrics ``ParameterCount``, ``ConnectionSparsity``, ``Footprint`` and the workload
metrics ``SynapticOperations``, ``ActivationSparsity``, ``ClassificationAccuracy`` (post-
processor ``ChooseMaxCount``), over one batch holding every sample. The one piece of glue is
:class:`SpikingJellySequence`, a ``NeuroBenchModel`` without snnTorch: it resets the
SpikingJelly state, runs the multi-step model on ``x.transpose(0, 1)`` (NeuroBench's batches
are ``[B, T, ...]``, SpikingJelly's ``[T, B, ...]``) and returns the output spikes as
``[B, T, classes]``; SpikingJelly's ``BaseNode`` is added to its activation modules so that
NeuroBench hooks the spiking layers. It prints one JSON line: ``results`` (NeuroBench's dict),
``versions`` and ``files`` (neurobench, numpy, numba, torch, snntorch, spikingjelly), and
``numba_jit`` (a jitted sum run on the numpy it sees).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NEUROBENCH_ENV = "neurobench"  # the neuroprune.envs test environment NeuroBench runs in
REPO = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 600.0
VERSIONS = ("neurobench", "numpy", "numba", "torch", "snntorch", "spikingjelly")


def neurobench_metrics(model, x: np.ndarray, labels: np.ndarray) -> dict:
    """NeuroBench's metrics of ``model`` (a SpikingJelly 2 multi-step module) on
    ``x [T, N, ...]`` with ``labels [N]``, measured in a child process of the neurobench
    environment (module docstring): ``{"results", "versions", "files", "numba_jit", "prefix"}``.
    Raises ``BackendUnavailableError`` (one line naming ``make test-envs``) when the environment
    is not ready, ``RuntimeError`` when the child fails."""
    import torch

    from neuroprune.envs import require

    python = require(NEUROBENCH_ENV, what="NeuroBench 2.3.0 (the NeuroBench tests)")
    with tempfile.TemporaryDirectory(prefix="np-neurobench-") as tmp:
        folder = Path(tmp)
        torch.save(model, folder / "model.pt")
        np.save(folder / "inputs.npy", np.ascontiguousarray(x, dtype=np.float32))
        np.save(folder / "labels.npy", np.asarray(labels, dtype=np.int64))
        command = [
            str(python),
            str(Path(__file__).resolve()),
            str(folder / "model.pt"),
            str(folder / "inputs.npy"),
            str(folder / "labels.npy"),
            "--threads",
            str(torch.get_num_threads()),
        ]
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        environ["PYTHONPATH"] = str(REPO)
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environ,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            timeout=CHILD_TIMEOUT_S,
        )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"NeuroBench in {python} exited {done.returncode}: {' | '.join(tail)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="neurobench_runner.py")
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("labels")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import numba
    import torch
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        SynapticOperations,
    )
    from neurobench.models import NeuroBenchModel
    from neurobench.processors.postprocessors import ChooseMaxCount
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.neuron import BaseNode

    class SpikingJellySequence(NeuroBenchModel):
        """A SpikingJelly multi-step module as a NeuroBenchModel (module docstring)."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net.eval()
            self.add_activation_module(BaseNode)

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            functional.reset_net(self.net)
            with torch.no_grad():
                spikes = self.net(batch.transpose(0, 1))
            return spikes.transpose(0, 1)

        def __net__(self) -> torch.nn.Module:
            return self.net

    torch.set_num_threads(max(1, args.threads))
    net = torch.load(args.model, weights_only=False)
    x = torch.from_numpy(np.load(args.inputs)).transpose(0, 1).contiguous()  # [N, T, ...]
    y = torch.from_numpy(np.load(args.labels))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=len(y), shuffle=False
    )
    benchmark = Benchmark(
        SpikingJellySequence(net),
        loader,
        [],
        [ChooseMaxCount()],
        [
            [ParameterCount, ConnectionSparsity, Footprint],
            [SynapticOperations, ActivationSparsity, ClassificationAccuracy],
        ],
    )
    with contextlib.redirect_stdout(sys.stderr):  # NeuroBench prints its progress
        results = benchmark.run(quiet=True)

    @numba.njit(cache=False)
    def jitted_sum(values):
        total = 0.0
        for value in values:
            total += value
        return total

    modules = {name: sys.modules.get(name) for name in VERSIONS}
    print(
        json.dumps(
            {
                "results": results,
                "prefix": sys.prefix,
                "versions": {name: metadata.version(name) for name in VERSIONS},
                "files": {
                    name: str(Path(module.__file__).resolve()) if module else ""
                    for name, module in modules.items()
                },
                "numba_jit": float(jitted_sum(np.arange(10, dtype=np.float64))),
            },
            default=float,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
