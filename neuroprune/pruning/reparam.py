"""Weight reparameterisations used during pruning (torch parametrizations).

Each class is a ``torch.nn.utils.parametrize`` module: the layer's ``weight`` becomes
``P(theta)`` computed on every forward pass, and ``theta`` (``parametrizations.weight.original``)
is what the optimizer trains. Only Linear/Conv2d weights are reparameterised, never BN.

* :class:`SoftThreshold` (STDS/LATS): ``w = sign(theta) * max(|theta| - d, 0)``, with the
  straight-through backward ``dw/dtheta = 1`` except exactly at ``theta = 0`` (where it is 0),
  docs/pruning.md §2.1.
* :class:`SignedReLU` (Grad R): ``w = s * max(theta, 0)`` with the sign ``s`` frozen at
  initialisation and the rewiring gradient ``dL/dtheta := s * dL/dw`` (no ``1[theta > 0]``),
  docs/pruning.md §1.1.
* :class:`HardMask` (GMP, magnitude): ``w = m * theta`` with a 0/1 mask ``m``; gradients reach
  only kept entries.

Every class multiplies by an optional 0/1 ``cap_mask`` buffer (the fan-in cap during training).
"""

from __future__ import annotations

import torch
from torch import nn


class SoftThresholdFunction(torch.autograd.Function):
    """``w = sign(theta) * relu(|theta| - d)``; backward ``grad * sign(theta)**2``."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(theta)
        return torch.sign(theta) * torch.relu(theta.abs() - d)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (theta,) = ctx.saved_tensors
        return grad * (theta != 0).to(grad.dtype), None


class SignedReLUFunction(torch.autograd.Function):
    """``w = s * relu(theta)``; backward ``s * grad`` (Grad R's rewiring gradient)."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(sign)
        return sign * torch.relu(theta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (sign,) = ctx.saved_tensors
        return grad * sign, None


def soft_threshold(theta: torch.Tensor, d: torch.Tensor | float) -> torch.Tensor:
    """Functional soft threshold with the straight-through backward."""
    d = torch.as_tensor(d, dtype=theta.dtype, device=theta.device)
    return SoftThresholdFunction.apply(theta, d)


def signed_relu(theta: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Functional Grad R map ``s * relu(theta)`` with the rewiring backward."""
    return SignedReLUFunction.apply(theta, sign)


class _Capped(nn.Module):
    """Shared buffer handling: an optional 0/1 fan-in cap mask multiplied into ``w``."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.register_buffer("cap_mask", torch.ones(shape))
        self.capped = False

    def set_cap_mask(self, mask: torch.Tensor | None) -> None:
        """Install (or clear with None) the fan-in cap mask."""
        self.capped = mask is not None
        if mask is not None:
            self.cap_mask.copy_(mask.to(self.cap_mask.dtype))

    def _apply_cap(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.cap_mask if self.capped else weight


class SoftThreshold(_Capped):
    """``w = sign(theta) * max(|theta| - d, 0)``; ``d`` (buffer ``threshold``) in weight units."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__(shape)
        self.register_buffer("threshold", torch.zeros(()))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self._apply_cap(SoftThresholdFunction.apply(theta, self.threshold))

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """``theta = sign(w) * (|w| + d)``, so attaching keeps the weights unchanged."""
        return torch.sign(weight) * (weight.abs() + self.threshold)


class SignedReLU(_Capped):
    """``w = s * max(theta, 0)`` with the frozen sign ``s`` (buffer ``sign``, entries ±1)."""

    def __init__(self, sign: torch.Tensor) -> None:
        super().__init__(sign.shape)
        self.register_buffer("sign", sign.clone())

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self._apply_cap(SignedReLUFunction.apply(theta, self.sign))

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """``theta = |w|`` (every connection starts active)."""
        return weight.abs()


class HardMask(_Capped):
    """``w = m * theta`` with the 0/1 buffer ``mask``."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__(shape)
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self._apply_cap(theta * self.mask)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight
