"""Input encodings in torch (layer L2): images ``[B, C, H, W]`` -> time steps ``[T, B, C, H, W]``.

Same definitions as :func:`neuroprune.data.encode` (the torch-free numpy twin):

* ``direct``: the analog image is the input current at every step, ``s[t] = x``.
* ``poisson``: Bernoulli rate coding, ``s[t] = 1 if u[t] < x else 0`` with ``u[t] ~ U[0, 1)``
  drawn from a seeded :class:`torch.Generator`; a pixel's expected spikes per step equal its
  intensity. The torch and numpy random streams differ, so compare the two only with ``direct``
  or with inputs encoded once and fed to both.
"""

from __future__ import annotations

import torch

from ..data import ENCODINGS, check_encoding

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
    if generator is None:
        generator = make_generator(0, x.device)
    noise = torch.rand((timesteps, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return (noise < x).to(x.dtype)
