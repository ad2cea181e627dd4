"""The public PruningMethod hooks (pruning/base.py): a new method implements ``install``,
``begin``, ``advance`` and ``scores``, and the shared life cycle calls each at its documented
moment: ``install`` once per target on ``attach``, ``begin`` once when pruning starts,
``advance(lr)`` after every optimizer step, ``scores`` at the projection."""

from __future__ import annotations

import torch

from neuroprune.fit.budget import derive_budget
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model
from neuroprune.pruning import PruningMethod
from neuroprune.pruning.targets import Target

torch.set_num_threads(1)
SHAPE = (1, 8, 8)


class Recorder(PruningMethod):
    """Ranks entries by their flat index (the last ones are kept) and records every call."""

    name = "recorder"

    def __init__(self, budget, **options) -> None:
        super().__init__(budget, **options)
        self.calls: list[tuple] = []

    def install(self, target: Target) -> None:
        self.calls.append(("install", target.name))

    def begin(self) -> None:
        self.calls.append(("begin", self.total_steps))
        self.knob = 0.5

    def advance(self, lr: float) -> None:
        self.calls.append(("advance", self.step, lr))

    def scores(self, target: Target) -> torch.Tensor:
        self.calls.append(("scores", target.name))
        weight = target.module.weight
        return torch.arange(weight.numel(), dtype=torch.float32).view(weight.shape)


def test_the_life_cycle_calls_each_public_hook_at_its_moment():
    model = build_model("mlp", SHAPE, 10, hidden=(16,), seed=0)
    budget = derive_budget(None, summarize(model, SHAPE, 2), sparsity=0.5)
    method = Recorder(budget, input_shape=SHAPE)
    method.attach(model)
    names = [t.name for t in method.targets]
    assert method.calls == [("install", name) for name in names]

    method.calls.clear()
    method.on_train_begin(model, None, 4, 1)
    for k, lr in enumerate([0.1, 0.2, 0.3, 0.4]):
        method.after_step(k, lr)
    assert method.calls == [("begin", 4)] + [
        ("advance", k + 1, lr) for k, lr in enumerate([0.1, 0.2, 0.3, 0.4])
    ]
    assert method.knob == 0.5

    method.calls.clear()
    counts = method.project()
    assert method.calls == [("scores", name) for name in names]
    assert sum(counts.values()) <= budget.synapses
    first = method.targets[0].module.weight.detach().flatten()
    assert first[-1] != 0  # the highest-scored entry of the first layer is kept
