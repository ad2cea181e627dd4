"""Threshold schedules (pure Python, no torch): progress ``x = t / T`` -> fraction of the knob.

A scheduler is ``f: [0, 1] -> [0, 1]`` with ``f(0) = 0``, ``f(1) = 1`` and ``f`` monotone
non-decreasing (a contract test checks every entry of :data:`SCHEDULERS`). Soft-threshold
methods use the threshold ``d_t = D * f(t / T)`` after optimizer step ``t`` of ``T``
(docs/pruning.md §2.2, §3.2):

* ``linear``: ``f(x) = x`` (STDS ``--gradual linear``);
* ``sine``: ``f(x) = (1 - cos(pi x)) / 2`` (STDS ``--gradual sine``);
* ``sinp``: ``f(x) = x + sin(pi x) / pi`` (S-LATS: the normalised integral of a cosine learning
  rate ``1 + cos(pi x)``);
* ``pgh``: increments proportional to ``(1 + cos(pi x)) * beta**x`` (continuation: the implied
  L1 strength grows by ``beta`` over training), closed form in :func:`pgh`; ``beta = 10``;
* ``cubic``: ``f(x) = 1 - (1 - x)**3`` (the GMP sparsity ramp of Zhu & Gupta, normalised).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from neuroprune.core.errors import ConfigError
from neuroprune.core.registry import Registry, lookup

Scheduler = Callable[[float], float]
PGH_BETA = 10.0


def _clip(x: float) -> float:
    return min(max(float(x), 0.0), 1.0)


def linear(x: float) -> float:
    """``f(x) = x``."""
    return _clip(x)


def sine(x: float) -> float:
    """``f(x) = (1 - cos(pi x)) / 2``: slow start, slow end."""
    return (1.0 - math.cos(math.pi * _clip(x))) / 2.0


def sinp(x: float) -> float:
    """``f(x) = x + sin(pi x) / pi``: cumulative cosine learning rate (S-LATS)."""
    x = _clip(x)
    return min(1.0, x + math.sin(math.pi * x) / math.pi)


def pgh(x: float, beta: float = PGH_BETA) -> float:
    """Continuation schedule: ``f'(x) ∝ (1 + cos(pi x)) * beta**x``, ``f(0) = 0``, ``f(1) = 1``.

    ``f(x) = [pi²(b^x − 1) + (b^x − 2) L² + b^x L (L cos(pi x) + pi sin(pi x))]
    / [pi²(b − 1) − 2 L²]`` with ``b = beta``, ``L = ln(beta)``; ``beta = 1`` is ``sinp``.
    """
    x = _clip(x)
    if beta <= 0:
        raise ConfigError("pgh beta must be > 0", where="pruning", field="beta", value=beta)
    if abs(beta - 1.0) < 1e-9:
        return sinp(x)
    log_b, bx, pi2 = math.log(beta), beta**x, math.pi**2
    top = pi2 * (bx - 1) + (bx - 2) * log_b**2
    top += bx * log_b * (log_b * math.cos(math.pi * x) + math.pi * math.sin(math.pi * x))
    value = top / (pi2 * (beta - 1) - 2 * log_b**2)
    return _clip(value)


def cubic(x: float) -> float:
    """``f(x) = 1 - (1 - x)**3`` (GMP: fast early pruning, gentle at the end)."""
    return 1.0 - (1.0 - _clip(x)) ** 3


SCHEDULERS: Registry[Scheduler] = Registry(
    "threshold scheduler", where="pruning", field="scheduler"
)
"""Registry: ``--scheduler`` name -> schedule ``f`` (the config's choices come from it)."""
for _schedule in (linear, sine, sinp, pgh, cubic):
    SCHEDULERS.register(_schedule.__name__, _schedule)


def get_scheduler(name: str, *, beta: float | None = None) -> Scheduler:
    """Look up a scheduler by name; ``beta`` configures ``pgh``."""
    schedule = lookup(SCHEDULERS, name)
    if name == "pgh" and beta is not None:
        return partial(pgh, beta=float(beta))
    return schedule


def gmp_sparsity(t: int, *, t0: int, span: int, initial: float, final: float) -> float:
    """GMP target sparsity: ``s_t = s_f + (s_i − s_f)(1 − (t − t0)/(n Δt))³``, clamped.

    ``span = n Δt`` is the number of steps the ramp lasts; before ``t0`` it is ``s_i``, after
    ``t0 + span`` it is ``s_f``.
    """
    if span <= 0:
        return final
    x = (t - t0) / span
    return final + (initial - final) * (1.0 - cubic(x))
