"""The options of a tiny ``neuroprune fit`` (seconds, not minutes) that the CLI tests share."""

from __future__ import annotations

TINY_OPTIONS = {
    "hidden": 32,
    "epochs": 1,
    "prune_epochs": 1,
    "finetune_epochs": 1,
    "quant_epochs": 1,
    "timesteps": 4,
}


def tiny_fit_args(**options: object) -> list[str]:
    """``--hidden 32``, one epoch per training stage and T = 4, changed by ``options``:
    ``sparsity=0.8`` adds ``--sparsity 0.8``, a value ``None`` leaves that option at fit's
    default (``quant_epochs=None``)."""
    chosen = {**TINY_OPTIONS, **options}
    args: list[str] = []
    for name, value in chosen.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def neuron_of(model) -> str:
    """``lif`` or ``if``: the one kind of spiking neuron of a float model, read from
    SpikingJelly's classes (not from neuroprune's records)."""
    from spikingjelly.activation_based import neuron  # deferred: this module stays torch-free

    kinds = {
        "if" if isinstance(m, neuron.IFNode) else "lif"
        for m in model.modules()
        if isinstance(m, neuron.BaseNode)
    }
    assert len(kinds) == 1, kinds
    return kinds.pop()
