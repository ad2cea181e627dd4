"""Choose each layer's mapping by validation where the chip format offers several that fit.

A format may map one layer in several ways that all fit the core (``Quantizer.grid_options``:
TrueNorth sends an input to 4 axons, 15 levels ``k A_i`` per neuron, or to 2, levels
``{-N_i, P_i - N_i, 0, P_i}``, where 4 copies of the layer's field fit a core's axons). Finer
levels have the smaller weight error, but the post-training model's accuracy is what counts,
so :func:`choose_mappings` decides per layer, greedily in layer order: every option of layer
``l`` is built (earlier layers at their chosen option, later ones at their default) and
scored on the validation part; the best is kept, a tie keeps the earlier option (the format's
default, the one with the smaller weight error). The test split is never read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from neuroprune.quantize.model import QuantizedLayer

Build = Callable[[Mapping[str, int]], Any]
"""options (layer name -> option index) -> a built candidate (handed to ``score``)."""


@dataclass(frozen=True)
class MappingChoice:
    """One layer's choice: its option names, their validation accuracies (0..1) and the one
    chosen (an index into both)."""

    layer: str
    options: tuple[str, ...]
    val: tuple[float, ...]
    chosen: int

    def note(self) -> str:
        scores = ", ".join(
            f"{name} {100 * v:.2f} %" for name, v in zip(self.options, self.val, strict=True)
        )
        tie = self.val.count(self.val[self.chosen]) > 1
        why = "tie: kept the default" if tie and self.chosen == 0 else "best on validation"
        return (
            f"{self.layer}: mapping {self.options[self.chosen]} chosen by validation ({scores}; "
            f"{why})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "options": list(self.options),
            "val": list(self.val),
            "chosen": self.options[self.chosen],
        }


def choose_mappings(
    layers: Sequence[QuantizedLayer],
    build: Build,
    score: Callable[[Any], float],
    default: Any = None,
) -> tuple[dict[str, int], list[MappingChoice]]:
    """The option per layer (module docstring) and one :class:`MappingChoice` per layer that
    had a choice. ``layers``: a default build's layers (their ``options``); ``build`` makes the
    candidate for an options map, ``score`` its validation accuracy; ``default``: the default
    build (``build({})``) when the caller has it (not built again)."""
    chosen: dict[str, int] = {}
    choices = []
    default_score = None if default is None else score(default)
    for layer in layers:
        if len(layer.options) < 2:
            continue
        name = layer.block.name
        scores = []
        for index in range(len(layer.options)):
            if index == 0 and default_score is not None:
                scores.append(default_score)  # the current choice, already scored
                continue
            scores.append(score(build({**chosen, name: index})))
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        chosen[name] = best
        default_score = scores[best]
        choices.append(MappingChoice(name, layer.options, tuple(scores), best))
    return {k: v for k, v in chosen.items() if v}, choices
