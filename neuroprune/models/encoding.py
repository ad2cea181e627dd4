"""Input encodings in torch (layer L3): images ``[B, C, H, W]`` -> time steps ``[T, B, C, H, W]``.

Same definitions as :func:`neuroprune.data.encoding.encode` (the torch-free numpy twin):

* ``direct``: the analog image is the input current at every step, ``s[t] = x``.
* ``poisson``: Bernoulli rate coding, ``s[t] = 1 if u[t] < x else 0`` with ``u[t] ~ U[0, 1)``
  drawn from a seeded :class:`torch.Generator`; a pixel's expected spikes per step equal its
  intensity. The torch and numpy random streams differ, so compare the two only with ``direct``
  or with inputs encoded once and fed to both.
* ``latency``: one spike per pixel with ``x > 0`` at step ``rint((1 - x) (T - 1))`` (float32,
  round half to even, like numpy's ``rint``): identical to the numpy twin.
* ``events``: ``x`` holds event frames ``[B, T, ...]``; the frames are the steps (``[T, B, ...]``
  in float32).
"""

from __future__ import annotations

import torch

from neuroprune.core.errors import DatasetError
from neuroprune.data.encoding import ENCODINGS, check_encoding

__all__ = ["ENCODINGS", "encode", "make_generator"]


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator


def encode(
    x: torch.Tensor,
    timesteps: int,
    encoding: str = "direct",
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Encode ``x`` ``[B, ...]`` (values in ``[0, 1]``) as ``[T, B, ...]`` (see module docstring).

    ``generator`` seeds the ``poisson`` draws; ``None`` uses a generator seeded with 0 so that
    encoding is always reproducible.
    """
    check_encoding(encoding)
    if encoding == "direct":
        return x.unsqueeze(0).expand(timesteps, *x.shape)
    if encoding == "events":
        return event_steps(x, timesteps)
    if encoding == "latency":
        return latency(x, timesteps)
    if generator is None:
        generator = make_generator(0, x.device)
    noise = torch.rand((timesteps, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return (noise < x).to(x.dtype)


def latency(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Latency code ``[T, B, ...]``: a pixel ``x > 0`` fires once at ``rint((1 - x)(T - 1))``."""
    x = x.to(torch.float32)
    fire_step = torch.round((1.0 - x) * float(timesteps - 1))
    steps = torch.arange(timesteps, device=x.device, dtype=torch.float32)
    steps = steps.reshape(-1, *([1] * x.dim()))
    return ((steps == fire_step) & (x > 0)).to(torch.float32)


def event_steps(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Event frames ``[B, T, ...]`` as float32 steps ``[T, B, ...]`` (T must match)."""
    if x.dim() < 2 or x.shape[1] != timesteps:
        raise DatasetError(
            f"event samples must have {timesteps} frames",
            where="events encoding",
            field="x.shape",
            value=tuple(x.shape),
            fix="Bin the events with the model's --timesteps (load the dataset again).",
        )
    return x.transpose(0, 1).to(torch.float32)
