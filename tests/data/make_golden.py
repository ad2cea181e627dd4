"""Make ``tests/data/golden_tiny.nir``: a tiny quantized conv net in neuroprune's NIR layout.

Run from the repository root:  ``PYTHONPATH=. python tests/data/make_golden.py``

The network (input ``(1, 4, 4)``, T = 4, direct encoding, chip ``loihi``)::

    Conv2d(1 -> 2, 3x3, stride 1, pad 1, bias) -> LIF(tau 2) -> Flatten
    -> Linear(32 -> 3, no bias) -> IF

is quantized by hand per docs/conventions.md §3: integer weights in [-4, 8] with
``weight_scale = 2**-3``, integer conv bias, ``threshold_int = 8`` (``v_threshold = 1.0``). All
values are dyadic and the input is binary, so every potential is exact in float32 and the
expected spikes do not depend on summation order or platform. The script prints the output
spikes of :func:`golden_input`; ``tests/test_export.py`` holds them as ``GOLDEN_SPIKES``.

Regenerate only when the NIR layout changes on purpose (and say so in the commit).
``golden_tiny_ge.nir`` is the same network written before the strict threshold convention
(graph metadata ``threshold: ">="``, SpikingJelly's own nodes); it stays as a legacy-file test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from spikingjelly.activation_based import functional, layer, surrogate

from neuroprune.models import neurons

GOLDEN_PATH = Path(__file__).with_name("golden_tiny.nir")
GOLDEN_INPUT_SHAPE = (1, 4, 4)
GOLDEN_TIMESTEPS = 4
GOLDEN_SCALE_EXP = 3  # weight_scale = 2**-3
GOLDEN_THRESHOLD_INT = 8


def build_golden_model() -> torch.nn.Sequential:
    """The quantized tiny network (module docstring), deterministic from a fixed seed."""
    rng = np.random.default_rng(2024)
    scale = 2.0**-GOLDEN_SCALE_EXP
    conv = layer.Conv2d(1, 2, 3, padding=1, bias=True)
    fc = layer.Linear(32, 3, bias=False)
    _set_integers(conv, rng.integers(-3, 9, size=(2, 1, 3, 3)), rng.integers(0, 5, size=2), scale)
    _set_integers(fc, rng.integers(-4, 9, size=(3, 32)), None, scale)
    common = {"v_reset": 0.0, "detach_reset": True, "surrogate_function": surrogate.ATan()}
    v_th = GOLDEN_THRESHOLD_INT * scale
    model = torch.nn.Sequential(
        conv,
        neurons.LIFNode(tau=2.0, decay_input=True, v_threshold=v_th, **common),
        layer.Flatten(),
        fc,
        neurons.IFNode(v_threshold=v_th, **common),
    )
    functional.set_step_mode(model, "m")
    return model.eval()


def _set_integers(module, weight_int, bias_int, scale: float) -> None:
    """Set float weights from integers and attach the conventions §3 quantization fields."""
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight_int * scale))
        module.register_buffer("weight_int", torch.from_numpy(weight_int.astype(np.int32)))
        if bias_int is not None:
            module.bias.copy_(torch.from_numpy(bias_int * scale))
            module.register_buffer("bias_int", torch.from_numpy(bias_int.astype(np.int32)))
    module.neuroprune_weight_bits = 5
    module.neuroprune_quant = {
        "format": "loihi",
        "bits": 5,
        "weight_scale": scale,
        "weight_exp": -GOLDEN_SCALE_EXP,
        "threshold_int": GOLDEN_THRESHOLD_INT,
        "decay_v": 2048,
        "decay_u": None,
        "bias_exp": None if bias_int is None else 6,
        "clipped_fraction": 0.0,
        "max_abs_error": 0.0,
        "mean_abs_error": 0.0,
        "notes": ["hand-made golden network"],
    }


def golden_input() -> torch.Tensor:
    """Binary input ``[T=4, B=3, 1, 4, 4]`` from a fixed seed."""
    rng = np.random.default_rng(7)
    shape = (GOLDEN_TIMESTEPS, 3, *GOLDEN_INPUT_SHAPE)
    return torch.from_numpy((rng.random(shape) < 0.5).astype(np.float32))


def export_golden(path: Path = GOLDEN_PATH) -> Path:
    """Write the golden file with neuroprune's NIR exporter."""
    from neuroprune.export import export_nir

    return export_nir(
        build_golden_model(),
        path,
        timesteps=GOLDEN_TIMESTEPS,
        encoding="direct",
        input_shape=GOLDEN_INPUT_SHAPE,
        chip="loihi",
    )


def main() -> None:
    path = export_golden()
    model = build_golden_model()
    with torch.no_grad():
        spikes = model(golden_input())
    print(f"wrote {path}")
    print("GOLDEN_SPIKES =", spikes.to(torch.int64).tolist())


if __name__ == "__main__":
    main()
