"""Quantization-aware fine-tuning: straight-through projection onto the chip grid.

The model's weights always hold grid values ``P(w)`` (the forward pass sees what the chip will
compute); a float *latent* copy ``w`` receives the updates (BinaryConnect-style straight-through
estimator: the gradient taken at ``P(w)`` is applied to ``w``). Per optimizer step:

    before_step:  g <- g * mask;  weight[kept] <- w      (the optimizer updates the latent)
    after_step:   w <- weight[kept];  [grid <- refit(w)];  weight[kept] <- P(w)

Only the kept synapses are gathered and projected, in the weights' own dtype (exact for the
power-of-two scales of Loihi and SpiNNaker), so a step costs O(kept), not a float64 pass over
every weight.

``P`` is the nearest level of the layer's grid (the one chosen at post-training quantization);
its scale and integer range stay frozen, so thresholds and biases keep their integers. Formats
with data-dependent levels (TrueNorth per-neuron magnitudes, DYNAP-SE shared values) re-fit the
levels to the latent weights after every step (``Quantizer.refit_grid``), so fine-tuning can
move them. ``mask`` is the post-training nonzero pattern: pruned synapses (and, on level grids, synapses
that rounded to 0) stay 0; on uniform grids and level grids with ``keep_nonzero`` (DYNAP-SE1's
repeated CAM entries) a kept synapse never rounds to 0 (the rule of
``neuroprune.chip.formats.grid.snap``), so the count stays the budget's. Biases (from BN folding) are projected
onto their own uniform grid with the same scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuroprune.chip.formats.base import get_quantizer
from neuroprune.chip.formats.grid import Grid
from neuroprune.chip.schema import ChipProfile
from neuroprune.quantize.model import QuantizedLayer, grid_tensors
from neuroprune.train.loop import Callback

Refit = Callable[[np.ndarray, Grid], Grid]


@dataclass(eq=False)
class Projection:
    """Training state of one parameter kept on a grid (mutable: the grid may be re-fitted).

    ``param`` holds grid values, ``mask`` the entries allowed to be nonzero and ``kept`` their
    flat indices; ``latent`` is the float copy of the kept entries (``param``'s dtype) that the
    optimizer updates; ``refit`` re-fits a level grid to the latent weights. Only kept entries
    are ever touched: pruned ones hold 0 and get no gradient (``mask``), so the optimizer
    leaves them at 0.
    """

    param: torch.nn.Parameter
    grid: Grid
    mask: torch.Tensor
    latent: torch.Tensor
    is_weight: bool = True
    refit: Refit | None = None
    kept: torch.Tensor | None = None

    def project(self) -> None:
        """``grid <- refit(latent)`` (if any), then ``param[kept] <- P(latent)``."""
        with torch.no_grad():
            if self.refit is not None:
                self.grid = self.refit(self.masked_latent().cpu().double().numpy(), self.grid)
            keep = self.is_weight
            if self.grid.levels is None:
                values = project_kept(self.latent, self.grid, keep_nonzero=keep)
            else:  # per-neuron level tables need the parameter's shape
                values = project(self.masked_latent(), self.grid).view(-1)[self.kept]
            self.param.view(-1).index_copy_(0, self.kept, values.to(self.param.dtype))

    def load_latent(self) -> None:
        """``param[kept] <- latent`` (before the optimizer step: it updates the latent)."""
        self.param.view(-1).index_copy_(0, self.kept, self.latent)

    def take_latent(self) -> None:
        """``latent <- param[kept]`` (after the optimizer step)."""
        torch.index_select(self.param.view(-1), 0, self.kept, out=self.latent)

    def masked_latent(self) -> torch.Tensor:
        """The latent values in the parameter's shape, 0 at pruned entries."""
        full = torch.zeros_like(self.param).view(-1)
        full[self.kept] = self.latent
        return full.view_as(self.param)


def project_kept(values: torch.Tensor, grid: Grid, *, keep_nonzero: bool = True) -> torch.Tensor:
    """Nearest value of a uniform grid for a flat vector of kept entries: in their own dtype
    when the scale is a power of two (``round(v / scale) * scale`` is then exact in float32),
    else through :func:`project` (float64). ``keep_nonzero`` (weights): a nonzero entry that
    rounds to 0 takes its nearest nonzero level, as ``snap`` does (biases: False)."""
    if not _is_pow2(grid.scale):
        return project(values, grid, keep_nonzero=keep_nonzero)
    steps = values / grid.scale
    q = torch.round(steps).clamp_(grid.int_min, grid.int_max)
    if keep_nonzero:
        q = _lift_zeros(q, steps, grid)
    q = q.mul_(grid.scale)
    return torch.where(values == 0, torch.zeros_like(q), q)


def _lift_zeros(q: torch.Tensor, steps: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``q`` with every nonzero ``steps`` entry that rounded to 0 set to
    ``clip(sign(steps), int_min, int_max)`` (``neuroprune.chip.formats.grid.round_uniform``)."""
    lifted = torch.sign(steps).clamp(grid.int_min, grid.int_max)
    return torch.where((q == 0) & (steps != 0), lifted, q)


def _is_pow2(scale: float) -> bool:
    mantissa, _ = math.frexp(scale)
    return scale > 0 and mantissa == 0.5


def project(values: torch.Tensor, grid: Grid, *, keep_nonzero: bool = True) -> torch.Tensor:
    """Nearest grid value of every entry (float64); zeros stay zero (same rule as ``snap``:
    on a uniform grid a nonzero weight keeps a nonzero level where ``keep_nonzero``)."""
    v = values.detach().double()
    if grid.levels is None:
        steps = v / grid.scale
        q = torch.clamp(torch.round(steps), grid.int_min, grid.int_max)
        if keep_nonzero:
            q = _lift_zeros(q, steps, grid)
        q = q * grid.scale
    else:
        levels = grid_tensors(grid, v)
        rows = v.reshape(v.shape[0], -1, 1)
        table = (
            levels.reshape(-1, 1, levels.shape[-1]) if levels.dim() == 2 else levels.view(1, 1, -1)
        )
        table = table.expand(rows.shape[0], 1, table.shape[-1])
        dist = torch.abs(rows - table)
        if grid.keep_nonzero:  # a kept synapse takes its nearest nonzero level (snap's rule)
            dist = torch.where((table == 0) & (rows != 0), torch.inf, dist)
        pick = torch.argmin(dist, dim=2, keepdim=True)
        q = torch.gather(table.expand(-1, rows.shape[1], -1), 2, pick).reshape(v.shape)
    return torch.where(v == 0, torch.zeros_like(q), q)


def projections(layers: Sequence[QuantizedLayer], profile: ChipProfile) -> list[Projection]:
    """Weight (and bias) projections of every quantized layer, masks from the PTQ integers."""
    quantizer = get_quantizer(profile.weights, profile.path)
    params = quantizer.read_params(profile.weights, profile.path)

    def refit(weight: np.ndarray, grid: Grid) -> Grid:
        return quantizer.refit_grid(weight, grid, params)

    out = []
    for layer in layers:
        syn, lq = layer.block.synapse, layer.quant
        mask = torch.as_tensor(lq.weight_int != 0, device=syn.weight.device)
        level_refit = refit if lq.grid.levels is not None else None
        out.append(_projection(syn.weight, lq.grid, mask, is_weight=True, refit=level_refit))
        if syn.bias is not None:
            low, high = lq.extra["bias_range"]
            bias_grid = Grid(scale=lq.scale, int_min=int(low), int_max=int(high))
            everywhere = torch.ones_like(syn.bias, dtype=torch.bool)
            out.append(_projection(syn.bias, bias_grid, everywhere, is_weight=False))
    return out


def _projection(param, grid: Grid, mask, *, is_weight: bool, refit=None) -> Projection:
    kept = torch.nonzero(mask.reshape(-1), as_tuple=False).view(-1)
    latent = param.detach().reshape(-1)[kept].clone()
    return Projection(param, grid, mask.to(param.dtype), latent, is_weight, refit, kept)


class QuantAwareCallback(Callback):
    """Training callback keeping every quantized parameter on its grid (module docstring)."""

    def __init__(self, layers: Sequence[QuantizedLayer], profile: ChipProfile) -> None:
        self.layers = tuple(layers)
        self.profile = profile
        self.projections: list[Projection] = []

    def on_train_begin(self, model, optimizer, steps_per_epoch: int, epochs: int) -> None:
        """Take the latent copies (after ``train`` moved the model to its device) and project;
        a later ``train`` call (one epoch at a time) keeps the latent copies."""
        if self.projections:
            return
        self.projections = projections(self.layers, self.profile)
        for p in self.projections:
            p.project()

    def before_step(self) -> None:
        with torch.no_grad():
            for p in self.projections:
                if p.param.grad is not None:
                    p.param.grad.mul_(p.mask)
                p.load_latent()

    def after_step(self, iteration: int, lr: float) -> None:
        with torch.no_grad():
            for p in self.projections:
                p.take_latent()
                p.project()

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> Mapping[str, Any]:
        kept = sum(int(torch.count_nonzero(p.param)) for p in self.projections if p.is_weight)
        return {"quantized_nonzero_weights": kept}

    def snapshot(self) -> dict[int, tuple[np.ndarray, Grid]]:
        """Every projected parameter's :meth:`state_of`, keyed by ``id(param)``."""
        return {id(p.param): self.state_of(p.param) for p in self.projections}

    def state_of(self, param: torch.nn.Parameter) -> tuple[np.ndarray, Grid]:
        """The masked float latent values of ``param`` (float64 numpy) and its current grid."""
        for p in self.projections:
            if p.param is param:
                return p.masked_latent().detach().cpu().double().numpy(), p.grid
        raise KeyError("parameter is not projected by this callback")
