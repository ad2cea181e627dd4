"""Data-parallel training over several processes (layer L4 helper): torchrun, DDP, rank 0 decides.

How a run is distributed (``neuroprune fit --nproc N``, or ``torchrun --nproc-per-node N -m
neuroprune fit ...``):

* every process (rank ``r`` of ``W``) runs the same pipeline on the same data files;
* :func:`process_group` joins the group torchrun announced in the environment (``RANK``,
  ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``): backend ``gloo`` on CPU, ``nccl`` on CUDA;
* :func:`wrap` puts the model in ``DistributedDataParallel``: its constructor copies rank 0's
  parameters and buffers to every rank, and every backward pass averages the gradients, so
  all ranks take the same optimizer step and keep identical weights;
* :func:`epoch_order` splits each epoch's shuffled samples with ``DistributedSampler``: rank
  ``r`` gets positions ``r, r + W, r + 2W, ...`` of a permutation seeded by ``(seed, epoch)``
  (padded by repetition to a multiple of ``W``); :func:`local_batch` is ``ceil(B / W)`` so the
  *global* batch stays the configured ``B`` and an epoch keeps (about) ``ceil(N / B)`` steps —
  the learning-rate schedule and the pruning schedule see the same number of steps as one
  process;
* decisions are taken on rank 0 and broadcast (:func:`from_main`, :func:`decide`): the budget
  controller's knob (threshold ``D`` / ``alpha``), every pruning mask and the exact projection,
  and whether ``--resume`` reuses an artifact; so every rank holds the identical mask and
  threshold even where floating point could differ;
* only rank 0 writes the run directory and prints (:func:`is_main`).

Without ``WORLD_SIZE > 1`` in the environment every function here is the one-process identity
(no process group, ``rank() == 0``), and training is exactly the single-process code path.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Who am I


def _group_ready() -> bool:
    import torch.distributed as dist  # deferred: imports torch

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 when not distributed; torchrun's ``RANK`` before init)."""
    if "torch.distributed" in sys.modules and _group_ready():
        import torch.distributed as dist  # deferred: imports torch

        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes ``W`` (1 when not distributed)."""
    if "torch.distributed" in sys.modules and _group_ready():
        import torch.distributed as dist  # deferred: imports torch

        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on rank 0: the process that decides, writes the run directory and prints."""
    return rank() == 0


def active() -> bool:
    """True inside a process group of more than one process."""
    return "torch.distributed" in sys.modules and _group_ready() and world_size() > 1


def launched_by_torchrun() -> bool:
    """True when torchrun (or ``--nproc``) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


# --------------------------------------------------------------------------------------------
# Process group


def backend_for(device: str) -> str:
    """``nccl`` for CUDA, ``gloo`` for CPU (torch.distributed's backends for each)."""
    return "nccl" if device == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: str = "cpu") -> Iterator[bool]:
    """Join the process group torchrun announced; yield whether training is distributed.

    A no-op (yields False) when the environment names one process or a group already exists
    (the caller's group is used and left alone). The group this function created is destroyed
    on exit.
    """
    if not launched_by_torchrun() or _group_ready():
        yield active()
        return
    import torch  # deferred: imports torch
    import torch.distributed as dist  # deferred: imports torch

    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend_for(device))
    try:
        yield True
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# Data split and model wrapper


def local_batch(batch_size: int) -> int:
    """Per-rank batch ``ceil(B / W)``: the global batch stays ``B`` (one process: ``B``)."""
    return math.ceil(batch_size / world_size()) if active() else batch_size


def epoch_order(n: int, seed: int, epoch: int) -> list[int] | None:
    """This rank's sample positions for ``epoch`` (``DistributedSampler``, shuffled by
    ``seed + epoch``), or None when not distributed (the caller keeps its own order)."""
    if not active():
        return None
    from torch.utils.data import DistributedSampler  # deferred: imports torch

    sampler = DistributedSampler(range(n), shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps per epoch over ``n`` samples: ``ceil(ceil(n / W) / ceil(B / W))``
    (``ceil(n / B)`` for one process); identical on every rank."""
    if not active():
        return max(1, math.ceil(n / batch_size))
    w = world_size()
    return max(1, math.ceil(math.ceil(n / w) / math.ceil(batch_size / w)))


def wrap(model: Any) -> Any:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` itself.

    DDP's constructor broadcasts rank 0's parameters and buffers, so each training stage
    starts from identical weights; buffers (BatchNorm statistics, quantized integers) are
    broadcast from rank 0 before every forward pass.
    """
    if not active():
        return model
    import torch  # deferred: imports torch
    from torch.nn.parallel import DistributedDataParallel  # deferred: imports torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return model
    device = params[0].device
    if device.type != "cuda":
        return DistributedDataParallel(model)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return DistributedDataParallel(model, device_ids=[index])


def unwrap(model: Any) -> Any:
    """The model inside a DDP wrapper (the model itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel  # deferred: imports torch

    return model.module if isinstance(model, DistributedDataParallel) else model


# --------------------------------------------------------------------------------------------
# Collectives: sums and rank-0 decisions


def sum_across(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (the values themselves when alone)."""
    if not active():
        return [float(v) for v in values]
    import torch  # deferred: imports torch
    import torch.distributed as dist  # deferred: imports torch

    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object); ``value`` when alone."""
    if not active():
        return value
    import torch.distributed as dist  # deferred: imports torch

    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def decide(choose: Callable[[], T]) -> T:
    """Run ``choose()`` on rank 0 only and give its result to every rank."""
    if not active():
        return choose()
    return from_main(choose() if is_main() else None)


def broadcast_parameters(tensors: Sequence[Any]) -> None:
    """Overwrite ``tensors`` in place with rank 0's values (no-op when alone)."""
    if not active():
        return
    import torch  # deferred: imports torch
    import torch.distributed as dist  # deferred: imports torch

    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)


# --------------------------------------------------------------------------------------------
# Launcher


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m neuroprune ARGV`` in ``nproc`` processes on this machine with
    ``torch.distributed.run`` (torchrun's own parser and elastic launcher, ``--standalone``);
    return rank 0's exit code (0 when every rank succeeded).

    torchrun counts any nonzero exit as a failure; neuroprune's codes (1: does not fit,
    2: bad input, ...) are read back from rank 0's failure record.
    """
    from torch.distributed.elastic.multiprocessing.errors import (
        ChildFailedError,  # deferred: imports torch
    )
    from torch.distributed.run import parse_args, run  # deferred: imports torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default, without its banner
    argv = without_option(argv, "--nproc")  # torchrun's parser would take it for its own
    try:
        run(
            parse_args(
                ["--standalone", f"--nproc-per-node={int(nproc)}", "-m", "neuroprune", *argv]
            )
        )
    except ChildFailedError as exc:
        return _rank0_exit_code(exc.failures)
    return 0


def without_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def run_function(nproc: int, fn: Callable[..., T], *args: Any) -> dict[int, T]:
    """Call ``fn(*args)`` in ``nproc`` fresh processes of one process group on this machine
    (torch's elastic launcher with a function entry point; ``fn`` must be importable by name).
    Returns ``{rank: fn's return value}``. Used by the tests and the DDP benchmark."""
    from torch.distributed.launcher.api import (  # deferred: imports torch
        LaunchConfig,
        elastic_launch,
    )

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=int(nproc),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        run_id=f"neuroprune-{os.getpid()}",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return elastic_launch(config, fn)(*args)


def _rank0_exit_code(failures: dict[int, Any]) -> int:
    """Rank 0's exit code from torchrun's failure records (1 when only another rank failed)."""
    first = failures.get(0)
    return int(first.exitcode) if first is not None and first.exitcode > 0 else 1


__all__ = [
    "active",
    "backend_for",
    "decide",
    "epoch_order",
    "from_main",
    "is_main",
    "launch",
    "launched_by_torchrun",
    "local_batch",
    "process_group",
    "rank",
    "run_function",
    "steps_per_epoch",
    "sum_across",
    "unwrap",
    "world_size",
    "wrap",
    "broadcast_parameters",
]
