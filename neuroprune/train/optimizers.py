"""torch's Adam and SGD without the ``torch._dynamo`` import (layer L4).

``torch.optim.Optimizer`` imports ``torch._dynamo`` (the ``torch.compile`` tracer) on its first
use: ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` are wrapped in
``torch._disable_dynamo`` (which imports it lazily on the first call), and every ``step`` runs
in ``_use_grad_for_differentiable``, which imports it to place ``graph_break()`` markers. That
import takes about 2 s on the development machine, longer than the 20 epochs of a digits MLP
spend on some stages, and nothing here compiles a graph (no ``torch.compile``).

:class:`EagerAdam` and :class:`EagerSGD` are ``torch.optim.Adam`` and ``torch.optim.SGD``: the
same ``__init__``, state, ``state_dict`` format and update kernels (``torch.optim.adam.adam``
and ``torch.optim.sgd.sgd``, called by the classes' own ``step``). They only call the
undecorated originals (``__wrapped__``) of those five methods, ``step`` with gradients
enabled iff ``differentiable`` (what ``_use_grad_for_differentiable`` sets, less its
``graph_break()`` markers, which do nothing outside ``torch.compile``): the parameters after every step
are bit for bit those of the torch classes (``tests/test_optimizers.py`` checks it against
them). The dynamo wrappers only matter while ``torch.compile`` traces the optimizer; where a
torch version lacks ``__wrapped__`` the decorated method runs (slower start, same numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer


def _undecorated(method: Callable[..., Any]) -> Callable[..., Any]:
    """The function a torch decorator wrapped (``functools.wraps`` keeps it in
    ``__wrapped__``), or ``method`` itself when it has none."""
    return getattr(method, "__wrapped__", method)


_ADD_PARAM_GROUP = _undecorated(Optimizer.add_param_group)
_ZERO_GRAD = _undecorated(Optimizer.zero_grad)
_STATE_DICT = _undecorated(Optimizer.state_dict)
_LOAD_STATE_DICT = _undecorated(Optimizer.load_state_dict)


class _Eager:
    """The four ``Optimizer`` methods without their ``torch._disable_dynamo`` wrapper, and
    ``step`` without its dynamo markers (module docstring). Mixed in before the torch class."""

    _torch_step: Callable[..., Any]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _ADD_PARAM_GROUP(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _ZERO_GRAD(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _STATE_DICT(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _LOAD_STATE_DICT(self, state_dict)

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        with torch.set_grad_enabled(bool(self.defaults["differentiable"])):  # type: ignore[attr-defined]
            return type(self)._torch_step(self, closure)


class EagerAdam(_Eager, torch.optim.Adam):
    """``torch.optim.Adam`` without the ``torch._dynamo`` import (module docstring)."""

    _torch_step = staticmethod(_undecorated(torch.optim.Adam.step))


class EagerSGD(_Eager, torch.optim.SGD):
    """``torch.optim.SGD`` without the ``torch._dynamo`` import (module docstring)."""

    _torch_step = staticmethod(_undecorated(torch.optim.SGD.step))
