"""What a simulation verified (torch-free): the kind of every agreement figure.

An agreement figure (spike agreement, prediction agreement, accuracy in the simulator) means
something different depending on what the simulator ran. :data:`VERIFICATION_KINDS` names the
three kinds, once, for report.json, report.md and the console:

* ``chip-exact``: the simulator ran the chip's published integer arithmetic bit for bit (the
  profile declares ``neuron.arithmetic``, the backend implements that arithmetic, and the run
  was fixed point). Agreement then says that the chip computes what the model computes.
* ``float stand-in``: the chip's arithmetic is not modelled; the simulator ran the exported file
  in floating point. Agreement then proves that the exported file is faithful to the model,
  not that the chip computes this. Where no public source defines the chip's arithmetic (the
  profile says so: ``neuron.arithmetic: {value: null, source, note}``, Tianjic) the detail
  begins "no public specification of <chip>'s neuron arithmetic".
* ``vendor simulator``: the chip vendor's own simulator ran the file (a backend that declares
  the chip in ``vendor_chips``: ``sinabs``, SynSense's Sinabs, for Speck; ``xylosim``,
  SynSense's XyloSim, for ``xylo``).

:func:`verification_kind` derives the kind from the chip profile, the backend and the mode; it
never looks at a chip's name. A backend declares what it runs exactly in two optional class
attributes: ``chip_arithmetics`` (the :data:`neuroprune.chip.arithmetic.ARITHMETICS` it runs bit
for bit in fixed point) and ``vendor_chips`` (profile ids whose vendor wrote it); a backend
with ``float_only = True`` (``pynn``) always counts as a floating-point run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHIP_EXACT = "chip-exact"
FLOAT_STAND_IN = "float stand-in"
VENDOR_SIMULATOR = "vendor simulator"


@dataclass(frozen=True)
class VerificationKind:
    """One kind of verification: its ``name`` (what reports print) and what an agreement figure
    of this kind ``proves``."""

    name: str
    proves: str


VERIFICATION_KINDS: dict[str, VerificationKind] = {
    kind.name: kind
    for kind in (
        VerificationKind(
            CHIP_EXACT,
            "agreement means the chip computes what the model computes",
        ),
        VerificationKind(
            FLOAT_STAND_IN,
            "the chip's arithmetic is not modelled: agreement proves the exported file is "
            "faithful to the model, not that the chip computes this",
        ),
        VerificationKind(
            VENDOR_SIMULATOR,
            "agreement means the vendor's own simulator of the chip computes what the model "
            "computes",
        ),
    )
}
"""Every verification kind, by name (the one place they are defined)."""


@dataclass(frozen=True)
class Verification:
    """What one simulation verified: the ``kind`` (a key of :data:`VERIFICATION_KINDS`) and a
    sentence naming what ran (``detail``)."""

    kind: str
    detail: str

    @property
    def proves(self) -> str:
        return VERIFICATION_KINDS[self.kind].proves

    def as_dict(self) -> dict[str, str]:
        """report.json ``simulation.verification``."""
        return {"kind": self.kind, "detail": self.detail, "proves": self.proves}


def verification_kind(profile: Any, backend: Any, *, fixed_point: bool) -> Verification:
    """The kind of verification that ``backend`` running a file for ``profile`` gives.

    ``profile`` is a :class:`~neuroprune.chip.schema.ChipProfile` or None (no chip named: the
    chip's arithmetic cannot have been run, so a float stand-in); ``backend`` a
    :class:`~neuroprune.sim.base.SimBackend`. Vendor simulator when the backend lists the
    profile's id in ``vendor_chips``; chip-exact when the run is fixed point and the backend's
    ``chip_arithmetics`` hold the profile's ``neuron.arithmetic``; a float stand-in otherwise.
    """
    name = getattr(backend, "name", str(backend))
    runs = tuple(getattr(backend, "chip_arithmetics", ()))
    if getattr(backend, "float_only", False):  # runs floating point whatever it is asked
        fixed_point = False
    if profile is None:
        return Verification(
            FLOAT_STAND_IN,
            f"the {name} backend ran the file in {_mode(runs, fixed_point)}; no chip profile "
            "was given, so no chip's arithmetic was checked",
        )
    if profile.id in tuple(getattr(backend, "vendor_chips", ())):
        return Verification(
            VENDOR_SIMULATOR,
            f"the {name} backend is {profile.vendor}'s simulator of {profile.name}",
        )
    arithmetic = profile.neuron.arithmetic
    if fixed_point and arithmetic is not None and arithmetic in runs:
        return Verification(
            CHIP_EXACT,
            f"the {name} backend ran {arithmetic}, {profile.name}'s published integer "
            "arithmetic, bit for bit",
        )
    unpublished = getattr(profile.neuron, "arithmetic_unpublished", None)
    if arithmetic is None and unpublished:
        return Verification(
            FLOAT_STAND_IN,
            f"{unpublished_text(profile)} ({unpublished}); the {name} backend ran the file in "
            f"{_mode(runs, fixed_point)}",
        )
    if arithmetic is None:
        why = f"the {profile.name} profile declares no neuron arithmetic (neuron.arithmetic)"
    elif not fixed_point:
        why = f"the run was floating point, not {profile.name}'s {arithmetic}"
    else:
        why = f"the {name} backend does not implement {arithmetic}"
    return Verification(
        FLOAT_STAND_IN, f"the {name} backend ran the file in {_mode(runs, fixed_point)}: {why}"
    )


def unpublished_text(profile: Any) -> str:
    """What a report says of a chip whose neuron arithmetic no public source defines
    (``neuron.arithmetic: {value: null, ...}``)."""
    return f"no public specification of {profile.name}'s neuron arithmetic"


def _mode(runs: tuple[str, ...], fixed_point: bool) -> str:
    """The arithmetic a backend ran: floating point, or its own fixed-point arithmetic."""
    if not fixed_point:
        return "floating point"
    return f"its fixed-point arithmetic ({', '.join(runs) or 'integer weights'})"
