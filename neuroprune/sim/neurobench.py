"""NeuroBench 2.3.0's metrics of a neuroprune model, measured by the ``neurobench`` package
itself in its own environment (:mod:`neuroprune.envs`, ``neuroprune backends install
neurobench``).

NeuroBench pulls snnTorch, tonic, torchaudio and numba, so it lives in a layered environment
that sees the tool's packages (torch, SpikingJelly 2, numpy) after its own. The parent
(:func:`neurobench_metrics`) bakes the pruning masks into the weights (:func:`baked_copy`),
saves the model (``torch.save`` of the whole module) and the encoded inputs, then runs this
module as a script with that environment's interpreter and the folder holding this
``neuroprune`` package on ``PYTHONPATH``::

    <neurobench python> -m neuroprune.sim.neurobench MODEL.pt inputs.npy labels.npy [--threads K]
    <neurobench python> -m neuroprune.sim.neurobench --job-on-stdin [--threads K]

The second form (:class:`NeuroBenchChild`, what the parent runs) imports torch and NeuroBench
first and then reads the three paths as one JSON line on stdin, so a fit run can start the
child while it trains and hand the model over when it is final.

The child (:func:`_child`) measures with NeuroBench's code only: ``Benchmark`` with the static
metrics ``ParameterCount``, ``ConnectionSparsity``, ``Footprint`` and the workload metrics
``SynapticOperations``, ``ActivationSparsity``, ``ClassificationAccuracy`` (post-processor
``ChooseMaxCount``) over one batch. Its one piece of glue is a ``NeuroBenchModel`` without
snnTorch: it resets the SpikingJelly state, runs the multi-step model on ``x.transpose(0, 1)``
(NeuroBench's batches are ``[B, T, ...]``, SpikingJelly's ``[T, B, ...]``) and returns the
output spikes as ``[B, T, classes]``; neuroprune's neuron classes (strict-threshold LIF/IF and
their chip-arithmetic forms) and SpikingJelly's ``BaseNode`` are registered as activation
modules, so NeuroBench hooks every spiking layer. The child prints one JSON line: ``results``
(NeuroBench's dict), ``version`` (neurobench's) and ``activation_layers`` (the modules it
hooked).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroprune.core.errors import SimulationError
from neuroprune.envs import require

NEUROBENCH_ENV = "neurobench"  # the neuroprune.envs environment NeuroBench runs in
CHILD_TIMEOUT_S = 900.0  # generous: NeuroBench runs the model once more on every sample
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding this neuroprune


def neurobench_metrics(
    model: torch.nn.Module, x: np.ndarray, labels: np.ndarray, *, timeout: float | None = None
) -> dict[str, Any]:
    """NeuroBench's metrics of ``model`` (a SpikingJelly 2 multi-step module) on encoded inputs
    ``x [T, N, ...]`` with ``labels [N]``, measured in a child process of the neurobench
    environment (module docstring). Returns ``{"results", "version", "activation_layers"}``.

    Raises ``BackendUnavailableError`` (one line naming ``neuroprune backends install
    neurobench``) when the environment is not ready, ``SimulationError`` when the child fails.
    """
    return NeuroBenchChild(timeout=timeout).measure(model, x, labels).result()


class NeuroBenchChild:
    """One NeuroBench measurement in a child process, in three steps a caller may spread out:
    the constructor starts the child, which imports torch and NeuroBench (seconds) and then
    waits for its job on stdin; :meth:`measure` writes the model and inputs and hands the job
    over (the model is saved before it returns, so the caller may go on using it);
    :meth:`result` waits for the answer. :meth:`cancel` stops the child at any step.
    ``timeout`` (seconds, default :data:`CHILD_TIMEOUT_S`) counts from :meth:`measure`.
    Raises as :func:`neurobench_metrics` does: ``BackendUnavailableError`` here,
    ``SimulationError`` from :meth:`result`."""

    def __init__(self, *, timeout: float | None = None) -> None:
        self.python = require(
            NEUROBENCH_ENV, what="NeuroBench 2.3.0 (the report's NeuroBench metrics)"
        )
        self.timeout = timeout or CHILD_TIMEOUT_S
        self._folder = tempfile.TemporaryDirectory(prefix="np-neurobench-")
        self._sent: float | None = None
        try:
            self._proc = self._spawn(Path(self._folder.name))
        except BaseException:
            self._folder.cleanup()
            raise

    def _spawn(self, folder: Path) -> subprocess.Popen:
        command = [
            str(self.python),
            "-m",
            __name__,
            "--job-on-stdin",
            "--threads",
            str(torch.get_num_threads()),
        ]
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        environ["PYTHONPATH"] = str(_PACKAGE_ROOT)
        # output to files, not pipes: a child that fills a pipe nobody reads yet would stall
        with open(folder / "stdout.txt", "wb") as out, open(folder / "stderr.txt", "wb") as err:
            return subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=out, stderr=err, env=environ, cwd=folder
            )

    def measure(self, model: torch.nn.Module, x: np.ndarray, labels: np.ndarray) -> NeuroBenchChild:
        """Write ``model`` (masks baked in, :func:`baked_copy`), ``x [T, N, ...]`` and
        ``labels [N]`` and hand the job to the waiting child; returns ``self``."""
        folder = Path(self._folder.name)
        job = {name: str(folder / name) for name in ("model.pt", "inputs.npy", "labels.npy")}
        torch.save(baked_copy(model), job["model.pt"])
        np.save(job["inputs.npy"], np.ascontiguousarray(x, dtype=np.float32))
        np.save(job["labels.npy"], np.asarray(labels, dtype=np.int64))
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps(job) + "\n").encode())
            self._proc.stdin.close()
        except BrokenPipeError:  # the child already died: result() reports how
            pass
        self._sent = time.monotonic()
        return self

    def result(self) -> dict[str, Any]:
        """Wait for the child and return its ``{"results", "version", "activation_layers"}``;
        ``SimulationError`` when it ran past the timeout (then killed) or exited non-zero."""
        if self._sent is None:
            raise RuntimeError("NeuroBenchChild.result() before measure()")
        left = max(0.0, self.timeout - (time.monotonic() - self._sent))
        folder = Path(self._folder.name)
        try:
            self._proc.wait(timeout=left)
            stdout, stderr = (
                (folder / name).read_text(errors="replace") for name in ("stdout.txt", "stderr.txt")
            )
        except subprocess.TimeoutExpired as exc:
            self.cancel()
            raise SimulationError(
                f"NeuroBench did not finish in {self.timeout:.0f} s",
                where="neurobench",
                fix="Measure fewer samples (--samples).",
            ) from exc
        finally:
            self._folder.cleanup()
        if self._proc.returncode != 0:
            tail = (stderr or stdout).strip().splitlines()[-3:]
            raise SimulationError(
                f"NeuroBench in {self.python} exited {self._proc.returncode}: {' | '.join(tail)}",
                where="neurobench",
            )
        return json.loads(stdout.strip().splitlines()[-1])

    def cancel(self) -> None:
        """Stop the child if it still runs and remove its files (a run that fails or is
        interrupted before its report stage leaves no process behind)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        self._folder.cleanup()


def baked_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose weights hold their pruning masks as exact zeros: NeuroBench's
    ``ConnectionSparsity`` counts stored zeros, so a mask kept apart would read as dense.

    Handles both ways a mask can live beside a weight: a ``torch.nn.utils.parametrize``
    parametrization (removed with the masked value kept) and ``torch.nn.utils.prune``'s
    ``weight_orig``/``weight_mask`` pair (``prune.remove``). A plain model (neuroprune's
    ``finalize`` already wrote exact zeros) is copied unchanged."""
    from torch.nn.utils import parametrize, prune

    memo: dict[int, Any] = {}
    for module in model.modules():  # prune's computed weight is no leaf: deepcopy refuses it
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                masked = getattr(module, hook._tensor_name)
                memo[id(masked)] = masked.detach().clone()
    baked = copy.deepcopy(model, memo)
    for module in baked.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return baked


def _activation_classes() -> tuple[type, ...]:
    """The spiking layers NeuroBench must hook: neuroprune's neurons and SpikingJelly's base."""
    from spikingjelly.activation_based.neuron import BaseNode

    from neuroprune.models.neurons import ChipIFNode, ChipLIFNode, IFNode, LIFNode

    return (LIFNode, IFNode, ChipLIFNode, ChipIFNode, BaseNode)


def _child(argv: list[str]) -> int:
    """Run NeuroBench on the saved model and inputs; print one JSON line (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m neuroprune.sim.neurobench")
    parser.add_argument("model", nargs="?")
    parser.add_argument("inputs", nargs="?")
    parser.add_argument("labels", nargs="?")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--job-on-stdin",
        action="store_true",
        help="import first, then read the three paths as one JSON line on stdin "
        "({'model.pt': ..., 'inputs.npy': ..., 'labels.npy': ...}); an empty stdin exits 0",
    )
    args = parser.parse_args(argv)

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

    class SpikingJellySequence(NeuroBenchModel):
        """A SpikingJelly multi-step module as a NeuroBenchModel (module docstring)."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net.eval()
            for cls in _activation_classes():
                self.add_activation_module(cls)

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            functional.reset_net(self.net)
            with torch.no_grad():
                spikes = self.net(batch.transpose(0, 1))
            return spikes.transpose(0, 1)

        def __net__(self) -> torch.nn.Module:
            return self.net

    torch.set_num_threads(max(1, args.threads))
    if args.job_on_stdin:  # everything above is imported: now wait for the job
        line = sys.stdin.readline().strip()
        if not line:
            return 0  # the parent cancelled before handing a job over
        job = json.loads(line)
        args.model, args.inputs, args.labels = (
            job[name] for name in ("model.pt", "inputs.npy", "labels.npy")
        )
    net = torch.load(args.model, weights_only=False)
    x = torch.from_numpy(np.load(args.inputs)).transpose(0, 1).contiguous()  # [N, T, ...]
    y = torch.from_numpy(np.load(args.labels))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=len(y), shuffle=False
    )
    wrapped = SpikingJellySequence(net)
    benchmark = Benchmark(
        wrapped,
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
    hooked = [layer["layer_name"] for layer in wrapped.activation_layers()]
    print(
        json.dumps(
            {
                "results": results,
                "version": metadata.version("neurobench"),
                "activation_layers": hooked,
            },
            default=float,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
