"""Figures in human units (layer L7): energy with an SI prefix, the energy line of a run."""

from __future__ import annotations

from collections.abc import Sequence

_PREFIXES = ((1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ"))


def energy_text(joules: float) -> str:
    """``joules`` with the largest SI prefix that keeps the number at least 1, three
    significant figures: 5.1e-4 J -> ``"510 µJ"``, 1.77e-7 J -> ``"177 nJ"``, 0 -> ``"0 J"``."""
    if joules == 0:
        return "0 J"
    for scale, unit in _PREFIXES:
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules / 1e-12:.3g} pJ"


def energy_line(
    joules: float | None, basis: str | None, missing: Sequence[str], chip: str | None
) -> str:
    """One sentence: the estimate per sample and what it sums, the profile fields without a
    figure; or that there is no estimate and which figures the chip's profile lacks."""
    named = ", ".join(missing)
    if joules is None:
        if not missing:
            return "no energy estimate recorded"
        return f"no energy estimate: the {chip or 'chip'} profile has no figure for {named}"
    line = f"energy estimate {energy_text(joules)} per sample ({basis or 'profile figures'})"
    if missing:
        line += f"; no figure in the profile for {named}, so that term is not counted"
    return line


AGREEMENT_SOURCES = {
    "reference": "the numpy reference emulation of the same file (bit-exact integer arithmetic)",
    "reference_model": "the trained PyTorch model",
    "expected_counts": "the spike counts given to the simulation",
}
"""``agreement_source`` (:mod:`neuroprune.sim.result`) in words."""


def agreement_words(source: str | None) -> str:
    """What the spike agreement was measured against, in words."""
    return AGREEMENT_SOURCES.get(source or "", source or "nothing")


def format_words(fmt: str | None) -> str:
    """A chip weight format (``profile.weights.format``) in words: the first line of its
    quantizer's docstring (:data:`neuroprune.chip.formats.QUANTIZERS`)."""
    from neuroprune.chip.formats import QUANTIZERS  # deferred: imports numpy

    if not fmt or fmt not in QUANTIZERS:
        return str(fmt)
    doc = (type(QUANTIZERS.get(fmt)).__doc__ or "").strip().splitlines()
    words = doc[0].rstrip(".").replace("``", "`") if doc else ""
    return words or f"{fmt} format"


def copies_sentence(copies: dict[str, int]) -> str:
    """One sentence on the neuron copies fan-out costs (the fit check's ``copies``)."""
    per_layer = ", ".join(f"layer {name} {n:,}" for name, n in copies.items())
    return (
        f"Neuron copies for fan-out: {sum(copies.values()):,} ({per_layer}); a neuron drives one "
        "axon, so it is copied in its own core once per further axon it feeds (copies take "
        "neuron slots, counted in each core's neurons)."
    )
