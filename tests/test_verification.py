"""What a simulation verified (issue 25, item 1): every agreement figure carries its kind, derived
from the chip profile, the backend and the mode, never from a chip's name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from neuroprune.chip.profiles import load_profile, shipped_profile_paths
from neuroprune.sim.reference import ReferenceBackend
from neuroprune.sim.verification import (
    CHIP_EXACT,
    FLOAT_STAND_IN,
    VENDOR_SIMULATOR,
    VERIFICATION_KINDS,
    verification_kind,
)


@dataclass(frozen=True)
class PlainBackend:
    """A backend that declares nothing it runs exactly."""

    name: str = "plain"


@dataclass(frozen=True)
class VendorBackend:
    """A backend its vendor wrote for one chip."""

    name: str = "vendor"
    vendor_chips: tuple[str, ...] = ("truenorth",)


def test_the_three_kinds_are_defined_once():
    assert list(VERIFICATION_KINDS) == [CHIP_EXACT, FLOAT_STAND_IN, VENDOR_SIMULATOR]
    assert VERIFICATION_KINDS[FLOAT_STAND_IN].proves.startswith("the chip's arithmetic is not")


@pytest.mark.parametrize("chip", sorted(shipped_profile_paths()))
def test_every_shipped_chip_is_chip_exact_only_where_its_arithmetic_runs(chip):
    """The oracle reads the profile field and the backend attribute directly: fixed point is
    chip-exact exactly where the profile declares an arithmetic the reference backend runs."""
    profile = load_profile(chip)
    backend = ReferenceBackend()
    expected = (
        CHIP_EXACT
        if profile.neuron.arithmetic is not None
        and profile.neuron.arithmetic in ReferenceBackend.chip_arithmetics
        else FLOAT_STAND_IN
    )
    assert verification_kind(profile, backend, fixed_point=True).kind == expected
    assert verification_kind(profile, backend, fixed_point=False).kind == FLOAT_STAND_IN


def test_loihi_fixed_point_is_chip_exact_and_tianjic_is_a_float_stand_in():
    loihi, tianjic = load_profile("loihi"), load_profile("tianjic")
    exact = verification_kind(loihi, ReferenceBackend(), fixed_point=True)
    assert exact.kind == CHIP_EXACT and "loihi_fixed_pt" in exact.detail
    truenorth = verification_kind(load_profile("truenorth"), ReferenceBackend(), fixed_point=True)
    assert truenorth.kind == CHIP_EXACT and "truenorth" in truenorth.detail
    stand_in = verification_kind(tianjic, ReferenceBackend(), fixed_point=False)
    assert stand_in.kind == FLOAT_STAND_IN
    assert "no public specification of Tianjic's neuron arithmetic" in stand_in.detail
    undeclared = verification_kind(load_profile("dynapse"), ReferenceBackend(), fixed_point=False)
    assert undeclared.kind == FLOAT_STAND_IN
    assert "declares no neuron arithmetic" in undeclared.detail
    floating = verification_kind(loihi, ReferenceBackend(), fixed_point=False)
    assert floating.kind == FLOAT_STAND_IN and "floating point" in floating.detail


def test_a_backend_that_does_not_run_the_arithmetic_is_not_chip_exact():
    loihi = load_profile("loihi")
    found = verification_kind(loihi, PlainBackend(), fixed_point=True)
    assert found.kind == FLOAT_STAND_IN and "does not implement loihi_fixed_pt" in found.detail


def test_a_vendor_backend_is_a_vendor_simulator_for_its_chips_only():
    assert (
        verification_kind(load_profile("truenorth"), VendorBackend(), fixed_point=False).kind
        == VENDOR_SIMULATOR
    )
    assert (
        verification_kind(load_profile("loihi"), VendorBackend(), fixed_point=True).kind
        == FLOAT_STAND_IN
    )


def test_no_profile_is_never_chip_exact():
    assert verification_kind(None, ReferenceBackend(), fixed_point=True).kind == FLOAT_STAND_IN


def _tiny_nir(tmp_path, chip: str, digits):
    """An untrained 64-16-10 mlp, post-training quantized for ``chip``, exported to NIR."""
    import torch

    from neuroprune.export import export_nir
    from neuroprune.models.zoo import build_model
    from neuroprune.quantize.model import ptq_model

    torch.manual_seed(0)
    model = build_model("mlp", digits.input_shape, digits.num_classes, hidden=(16,)).eval()
    qmodel, _ = ptq_model(model, load_profile(chip), digits.input_shape)
    path = tmp_path / f"{chip}.nir"
    export_nir(
        qmodel, path, timesteps=4, encoding="direct", input_shape=digits.input_shape, chip=chip
    )
    return path, digits.x_test[:20]


@pytest.mark.parametrize(
    ("chip", "fixed", "kind", "computed"),
    [
        ("loihi", True, CHIP_EXACT, "ran as the chip computes it"),
        ("truenorth", False, FLOAT_STAND_IN, "did not run as the chip computes it"),
    ],
)
def test_the_simulation_result_and_its_placement_note_carry_the_kind(
    tmp_path, digits, chip, fixed, kind, computed
):
    from neuroprune.sim import simulate

    path, x = _tiny_nir(tmp_path, chip, digits)
    result = simulate(path, x=x, profile=chip, backend="reference", fixed_point=fixed).as_dict()
    assert result["verification"]["kind"] == kind
    placement_note = next(n for n in result["notes"] if "host" in n)
    assert computed in placement_note and "ran on the chip" not in placement_note


def test_tianjic_says_no_public_specification_of_its_arithmetic():
    """Issue 23, item 9: no public source defines Tianjic's neuron arithmetic bit for bit; the
    profile says so and every verification of it is a float stand-in that names the gap."""
    tianjic = load_profile("tianjic")
    assert tianjic.neuron.arithmetic is None
    assert "no public source defines" in (tianjic.neuron.arithmetic_unpublished or "")
    for fixed_point in (True, False):
        found = verification_kind(tianjic, ReferenceBackend(), fixed_point=fixed_point)
        assert found.kind == FLOAT_STAND_IN
        line = f"{found.kind}: {found.detail}"
        assert line.startswith(
            "float stand-in: no public specification of Tianjic's neuron arithmetic"
        )


def _tianjic_raw() -> dict:
    import yaml

    return yaml.safe_load(shipped_profile_paths()["tianjic"].read_text())


@pytest.mark.parametrize(
    "arithmetic, problem",
    [
        ({"value": None, "source": "S29"}, "what they lack (note)"),
        ({"value": None, "note": "nothing published"}, "the sources checked (source)"),
        ({"value": None, "source": "S29", "note": "x", "rules": {}}, "no rules without"),
    ],
)
def test_an_unpublished_arithmetic_needs_its_sources_and_note(arithmetic, problem):
    from neuroprune.chip.profile_reader import parse_profile
    from neuroprune.core.errors import ProfileError

    raw = _tianjic_raw()
    raw["neuron"]["arithmetic"] = arithmetic
    with pytest.raises(ProfileError, match="neuron.arithmetic") as caught:
        parse_profile(raw)
    assert problem in str(caught.value)


def test_a_chip_without_the_declaration_keeps_the_plain_stand_in_detail():
    raw = _tianjic_raw()
    del raw["neuron"]["arithmetic"]
    from neuroprune.chip.profile_reader import parse_profile

    plain = parse_profile(raw)
    assert plain.neuron.arithmetic_unpublished is None
    found = verification_kind(plain, ReferenceBackend(), fixed_point=True)
    assert "declares no neuron arithmetic" in found.detail
