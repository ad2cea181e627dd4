"""EagerAdam / EagerSGD: torch's Adam and SGD, bit for bit (the oracle is torch.optim itself),
without importing torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from neuroprune.train.optimizers import EagerAdam, EagerSGD

CASES = [
    (torch.optim.Adam, EagerAdam, {"lr": 1e-2, "weight_decay": 0.0}),
    (torch.optim.Adam, EagerAdam, {"lr": 3e-3, "weight_decay": 1e-4}),
    (torch.optim.SGD, EagerSGD, {"lr": 5e-2, "momentum": 0.9, "weight_decay": 1e-4}),
    (torch.optim.SGD, EagerSGD, {"lr": 1e-1, "momentum": 0.0, "weight_decay": 0.0}),
]


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _steps(net: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int, seed: int) -> None:
    data = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 6, generator=data)
        y = torch.randint(0, 3, (8,), generator=data)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize(("torch_class", "eager_class", "options"), CASES)
def test_same_parameters_and_state_as_torch_after_every_step(torch_class, eager_class, options):
    reference, ours = _net(0), _net(0)
    ref_opt = torch_class(reference.parameters(), **options)
    our_opt = eager_class(ours.parameters(), **options)
    assert isinstance(our_opt, torch_class)
    for round_ in range(3):
        _steps(reference, ref_opt, 4, seed=round_)
        _steps(ours, our_opt, 4, seed=round_)
        for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
            assert torch.equal(a, b)
    ref_state, our_state = ref_opt.state_dict(), our_opt.state_dict()
    assert ref_state["param_groups"] == our_state["param_groups"]
    for key, values in ref_state["state"].items():
        for name, value in values.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(our_state["state"][key][name])
            )


@pytest.mark.parametrize(("torch_class", "eager_class", "options"), CASES)
def test_state_dicts_load_across_both_classes(torch_class, eager_class, options):
    """A checkpoint written by torch's class resumes in ours (and back) to the same weights."""
    first, second = _net(1), _net(1)
    ref_opt = torch_class(first.parameters(), **options)
    _steps(first, ref_opt, 3, seed=5)
    second.load_state_dict(first.state_dict())
    our_opt = eager_class(second.parameters(), **options)
    our_opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))  # torch shares the buffers
    _steps(first, ref_opt, 3, seed=6)
    _steps(second, our_opt, 3, seed=6)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    back = torch_class(first.parameters(), **options)
    back.load_state_dict(our_opt.state_dict())


def test_training_does_not_import_torch_dynamo():
    """In a fresh interpreter: a few epochs of neuroprune's training loop (Adam and SGD), then
    torch._dynamo is still not in sys.modules (torch.optim's classes import it, ~2 s)."""
    probe = (
        "import sys\n"
        "from neuroprune.data.datasets import load_dataset\n"
        "from neuroprune.models.zoo import build_model\n"
        "from neuroprune.train.loop import default_config, train\n"
        "d = load_dataset('digits')\n"
        "for opt in ('adam', 'sgd'):\n"
        "    m = build_model('mlp', d.input_shape, 10, hidden=(16,), seed=0)\n"
        "    r = train(m, d, default_config(epochs=1, timesteps=2, optimizer=opt))\n"
        "    assert r.optimizer_state['state']\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
