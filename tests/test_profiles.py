"""Chip profiles: contract over every shipped YAML, alias resolution, and validator errors.

Torch-free: only ``neuroprune.chip.profiles`` and ``neuroprune.core.errors`` are imported.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuroprune.chip.profiles import load_profile, resolve_chip, shipped_profile_paths
from neuroprune.chip.schema import STATUSES, UNITS, ChipProfile
from neuroprune.core.errors import ProfileError, UnknownChipError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mychip.yaml"
SHIPPED = shipped_profile_paths()
REQUIRED_IDS = {
    "loihi",
    "loihi2",
    "truenorth",
    "spinnaker",
    "spinnaker2",
    "tianjic",
    "dynapse",
    "dynapse2",
    "brainscales",
    "brainscales2",
    "darwin2",
    "speck",
}

# Numbers allowed outside the quantity form: format constants and lists, not chip facts.
STRUCTURAL_PREFIXES = (
    "schema_version",
    "core.synapse_encoding.",
    "weights.bits_allowed",
    "weights.scale.range",
    "weights.params.",
)

# Parameter names each quantizer format needs in weights.params (optional ones may be added).
WEIGHT_PARAMS = {
    "loihi": {
        "mantissa_bits",
        "exponent_range",
        "mixed_sign_drops_lsb",
        "threshold_mantissa_bits",
        "threshold_shift",
        "decay_bits",
        "bias_mantissa_bits",
        "bias_exponent_bits",
        "state_bits",
    },
    "truenorth": {"axon_types", "type_weight_bits", "mapping", "axons_per_core"},
    "spinnaker": {"weight_bits", "scale", "sign"},
    "int": {"bits"},
    "xylo": {"bits"},
    "dynapse": {"shared_values_per_core", "connection_bits"},
    "brainscales": {"magnitude_bits", "sign"},
}
WEIGHT_PARAMS["loihi2"] = WEIGHT_PARAMS["loihi"]
WEIGHT_PARAMS["speck"] = WEIGHT_PARAMS["int"]

CONV_SHARING = {
    "loihi": False,
    "loihi2": True,
    "truenorth": False,
    "spinnaker": False,
    "spinnaker2": False,
    "tianjic": False,
    "dynapse": False,
    "dynapse2": False,
    "brainscales": False,
    "brainscales2": False,
    "darwin2": False,
    "speck": True,
}


def _raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted path, node) for quantity mappings and for bare numbers, depth first."""
    if isinstance(node, Mapping):
        if "value" in node:
            yield path, node
            return
        for key, child in node.items():
            yield from _walk(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _walk(child, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def _cited_ids(raw: Mapping[str, Any]) -> set[str]:
    body = {k: v for k, v in raw.items() if k != "sources"}
    return set(re.findall(r"\bS\d+\b", yaml.safe_dump(body, width=10_000)))


# --------------------------------------------------------------------------------------------
# Contract over every shipped profile


def test_shipped_set_is_complete() -> None:
    assert len(SHIPPED) >= 11
    assert set(SHIPPED) >= REQUIRED_IDS


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_profile_loads_and_id_matches_stem(stem: str) -> None:
    profile = load_profile(SHIPPED[stem])
    assert isinstance(profile, ChipProfile)
    assert profile.id == stem
    assert len(profile.sha256) == 64


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_every_number_is_a_sourced_quantity(stem: str) -> None:
    raw = _raw(SHIPPED[stem])
    sources = raw["sources"]
    for path, node in _walk(raw):
        if not isinstance(node, Mapping):
            assert path.startswith(STRUCTURAL_PREFIXES), f"{stem}: bare number at {path}"
            continue
        assert node.get("unit"), f"{stem}: {path} has no unit"
        assert node.get("status") in STATUSES, f"{stem}: {path} status {node.get('status')!r}"
        refs = str(node.get("source") or "").replace(",", " ").split()
        assert refs, f"{stem}: {path} has no source"
        assert set(refs) <= set(sources), f"{stem}: {path} cites {refs}"
        if node["status"] == "estimate":
            assert node.get("note"), f"{stem}: estimate at {path} must say why in 'note'"


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_units_are_the_schema_units(stem: str) -> None:
    profile = load_profile(SHIPPED[stem])
    for path, quantity in profile.quantities.items():
        if path == "neuron.fan_out_max":
            if quantity.value is not None:
                assert quantity.unit == f"{profile.neuron.fan_out_unit}s", stem
            continue
        assert quantity.unit == UNITS[path], f"{stem}: {path}"


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_every_listed_source_is_cited(stem: str) -> None:
    raw = _raw(SHIPPED[stem])
    unused = set(raw["sources"]) - _cited_ids(raw)
    assert not unused, f"{stem}: sources listed but never cited: {sorted(unused)}"


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_weight_params_match_format(stem: str) -> None:
    weights = load_profile(SHIPPED[stem]).weights
    missing = WEIGHT_PARAMS[weights.format] - set(weights.params)
    assert not missing, f"{stem}: weights.params lacks {sorted(missing)}"
    assert weights.bits in weights.bits_allowed


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_encoding_is_consistent_with_core(stem: str) -> None:
    profile = load_profile(SHIPPED[stem])
    enc, core, neuron = profile.core.encoding, profile.core, profile.neuron
    assert profile.neurons_max <= profile.cores * core.neurons_max
    if enc.kind in ("dense_matrix", "row_list"):
        assert enc.bits_per_synapse >= profile.weights.bits
    if enc.kind == "crossbar":
        assert (enc.rows, enc.cols) == (core.input_axons_max, core.neurons_max)
    if enc.kind == "cam":
        assert neuron.fan_in_max
    if enc.kind == "blocked_list":
        assert enc.block_synapses and enc.word_bits > 1 and core.synapse_memory_bits
    if neuron.fan_out_max is not None:
        assert neuron.fan_out_unit
    assert profile.conv_weight_sharing is CONV_SHARING.get(stem, profile.conv_weight_sharing)


def test_aliases_are_unique() -> None:
    owner: dict[str, str] = {}
    for stem, path in SHIPPED.items():
        for name in (stem, *load_profile(path).aliases):
            assert owner.setdefault(name, stem) == stem, f"{name!r}: {owner[name]} and {stem}"


@pytest.mark.parametrize(
    ("stem", "field", "expected"),
    [
        ("loihi", "core.synapse_memory_bits", 1048576),
        ("loihi", "chip.neurons_max", 131072),
        ("truenorth", "neuron.fan_in_max", 256),
        ("truenorth", "neuron.fan_out_max", 1),
        ("truenorth", "weights.distinct_values_per_neuron", 4),
        ("dynapse", "neuron.fan_in_max", 64),
        ("dynapse", "neuron.fan_out_max", 3),
        ("dynapse2", "neuron.fan_out_max", 4),
        ("tianjic", "neuron.fan_in_max", 256),
        ("brainscales2", "neuron.fan_in_max", 256),
        ("speck", "neuron.fan_out_max", 2),
        ("spinnaker", "chip.memory_bits", 128 * 2**20 * 8),
        ("loihi", "energy.synop_pj", 23.6),
        ("loihi", "energy.neuron_update_pj", 81),
        ("truenorth", "energy.synop_pj", 26),
        ("spinnaker", "energy.synop_pj", 13300),
        ("spinnaker", "energy.neuron_update_pj", 26000),
        ("spinnaker2", "energy.synop_pj", 450),
        ("spinnaker2", "energy.neuron_update_pj", 2190),
    ],
)
def test_key_facts(stem: str, field: str, expected: float) -> None:
    assert load_profile(stem).quantities[field].value == expected


def test_facts_that_must_not_leak() -> None:
    darwin = load_profile("darwin2")
    assert darwin.energy.synop_pj is None, "5.47 pJ is Darwin3, a different chip"
    assert load_profile("speck").core.layers_per_core == "one"
    truenorth = load_profile("truenorth").neuron  # one target axon; more by copies in its core
    assert (truenorth.fan_out_max, truenorth.fan_out_unit) == (1, "axon")
    assert truenorth.fan_out_met_by == "source_copies"
    assert load_profile("speck").neuron.fan_out_unit == "layer"


# --------------------------------------------------------------------------------------------
# Resolution by name and alias


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("loihi", "loihi"),
        ("loihi1", "loihi"),
        ("intel_loihi", "loihi"),
        ("Intel-Loihi", "loihi"),
        ("Loihi-2", "loihi2"),
        ("dynapcnn", "speck"),
        ("dynap_cnn", "speck"),
        ("DYNAP-CNN", "speck"),
        ("BSS2", "brainscales2"),
        ("TrueNorth", "truenorth"),
    ],
)
def test_alias_resolution(name: str, stem: str) -> None:
    assert resolve_chip(name) == SHIPPED[stem]
    assert load_profile(name).id == stem


def test_unknown_chip_suggests_close_match() -> None:
    with pytest.raises(UnknownChipError) as info:
        load_profile("lohi")
    message = str(info.value)
    assert "unknown chip 'lohi'" in message
    assert "Did you mean" in message and "loihi" in message
    assert "\n" not in message


def test_missing_profile_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------
# Validator errors: one line, naming the file and the dotted path


def _base() -> dict[str, Any]:
    return copy.deepcopy(_raw(EXAMPLE))


def _load_bad(tmp_path: Path, raw: Any = None, text: str | None = None) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    text = "schema_version: 1\nid: x\nchip:\n  cores: [1, 2\n  neurons_max: 4\n"
    message = _load_bad(tmp_path, text=text)
    assert "malformed YAML" in message
    assert re.search(r"line \d+", message)


def test_missing_required_field(tmp_path: Path) -> None:
    raw = _base()
    del raw["core"]["neurons_max"]
    message = _load_bad(tmp_path, raw)
    assert "core.neurons_max: missing (required)" in message
    assert "(1 problem)" in message, "no follow-on consistency error for a missing field"


def test_negative_cores(tmp_path: Path) -> None:
    raw = _base()
    raw["chip"]["cores"]["value"] = -4
    assert "chip.cores: must be positive, got -4" in _load_bad(tmp_path, raw)


@pytest.mark.parametrize("bits", [0, -1])
def test_non_positive_weight_bits(tmp_path: Path, bits: int) -> None:
    raw = _base()
    raw["weights"]["bits"] = bits
    message = _load_bad(tmp_path, raw)
    assert f"weights.bits: must be positive, got {bits}" in message
    assert message.count("weights.bits:") == 1


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    raw = _base()
    raw["chipp"] = raw.pop("energy")
    assert "chipp: unknown key (did you mean 'chip'?)" in _load_bad(tmp_path, raw)


def test_unknown_nested_key_suggests(tmp_path: Path) -> None:
    raw = _base()
    raw["neuron"]["fan_in_mx"] = 3
    assert "neuron.fan_in_mx: unknown key (did you mean 'fan_in_max'?)" in _load_bad(tmp_path, raw)


def test_inconsistent_neuron_totals(tmp_path: Path) -> None:
    raw = _base()
    raw["chip"]["neurons_max"]["value"] = 9999
    message = _load_bad(tmp_path, raw)
    assert "chip.neurons_max: 9999 exceeds chip.cores x core.neurons_max = 2048" in message


def test_wrong_unit_and_unknown_source(tmp_path: Path) -> None:
    raw = _base()
    raw["core"]["synapse_memory_bits"].update(value=64, unit="KiB", source="S99")
    message = _load_bad(tmp_path, raw)
    assert "core.synapse_memory_bits.unit: must be 'bits'" in message
    assert "core.synapse_memory_bits.source: cites 'S99'" in message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("weights", "scale", {"kind": "none", "range": ["a", 1]}),
        ("weights", "sign_costs_bit", "yes"),
        ("neuron", "fan_out_unit", "synapse"),
    ],
)
def test_bad_values_are_reported_not_crashes(
    tmp_path: Path, section: str, key: str, value: Any
) -> None:
    raw = _base()
    raw[section][key] = value
    assert f"{section}.{key}" in _load_bad(tmp_path, raw)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    raw = _base()
    raw["chip"]["cores"]["value"] = -1
    del raw["core"]["neurons_max"]
    raw["weights"]["bits"] = 0
    raw["chipp"] = 1
    message = _load_bad(tmp_path, raw)
    assert "(4 problems)" in message
    for path in ("chip.cores", "core.neurons_max", "weights.bits", "chipp"):
        assert f"{path}:" in message


def test_non_string_key_is_reported(tmp_path: Path) -> None:
    text = Path(EXAMPLE).read_text() + "1: 2\n"
    assert "1: unknown key" in _load_bad(tmp_path, text=text)


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    assert "YAML mapping" in _load_bad(tmp_path, text="- just\n- a list\n")


# --------------------------------------------------------------------------------------------
# The example user profile


def test_example_user_profile_loads() -> None:
    profile = load_profile(EXAMPLE)
    assert profile.id == "mychip"
    assert profile.weights.format == "int"
    assert profile.neurons_max <= profile.cores * profile.core.neurons_max
    assert profile.chips_per_system_max == 4


def test_example_resolves_as_a_path_string() -> None:
    assert resolve_chip(str(EXAMPLE)) == EXAMPLE


@pytest.mark.parametrize(
    "path,value,text",
    [
        ("neuron.fan_in_max", 0, "neuron.fan_in_max: must be positive (null for no limit), got 0"),
        ("neuron.fan_out_max", -1, "neuron.fan_out_max: must be positive (null for no limit)"),
        ("core.synapse_memory_bits", 1e300, "core.synapse_memory_bits: 1e+300 bits is beyond any"),
        ("chip.memory_bits", 2**50, "chip.memory_bits: 1.1259e+15 bits is beyond any physical"),
        ("weights.bits", 512, "weights.bits: 512 bits is beyond any physical chip"),
        ("core.neurons_max", 10**9, "core.neurons_max: 1e+09 neurons is beyond any physical"),
    ],
)
def test_absurd_values_are_rejected_with_the_field(path, value, text):
    """Issue 11: zero or negative caps and values no physical chip has are errors, named by
    field, before anything runs."""
    from neuroprune.chip.profile_reader import parse_profile
    from neuroprune.core.errors import ProfileError

    raw = {
        "schema_version": 1,
        "id": "x",
        "name": "x",
        "chip": {"cores": 4, "neurons_max": 64},
        "core": {"neurons_max": 16},
        "neuron": {"models": ["LIF"]},
        "weights": {"bits": 8},
    }
    raw["core"]["synapse_encoding"] = {"kind": "cam"}
    section, key = path.split(".")
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ProfileError) as info:
        parse_profile(raw)
    assert text in str(info.value), str(info.value)


def test_absurd_encoding_parameter_is_rejected():
    from neuroprune.chip.profile_reader import parse_profile
    from neuroprune.core.errors import ProfileError

    raw = {
        "schema_version": 1,
        "id": "x",
        "name": "x",
        "chip": {"cores": 4, "neurons_max": 64},
        "core": {"neurons_max": 16},
        "neuron": {"models": ["LIF"]},
        "weights": {"bits": 8},
    }
    raw["core"]["synapse_encoding"] = {"kind": "crossbar", "rows": 10**9, "cols": 256}
    with pytest.raises(ProfileError, match="core.synapse_encoding.rows: 1000000000 is beyond"):
        parse_profile(raw)


@pytest.mark.parametrize(
    ("neuron", "text"),
    [
        (
            {"fan_out_max": 1, "fan_out_unit": "core", "fan_out_met_by": "source_copies"},
            "neuron.fan_out_met_by: source_copies needs neuron.fan_out_max with fan_out_unit: axon",
        ),
        (
            {"fan_out_met_by": "source_copies"},
            "neuron.fan_out_met_by: source_copies needs neuron.fan_out_max",
        ),
        (
            {"fan_out_max": 1, "fan_out_unit": "axon", "fan_out_met_by": "splitters"},
            "neuron.fan_out_met_by: must be one of ['limit', 'source_copies']",
        ),
    ],
)
def test_copies_for_fan_out_need_a_fan_out_in_axons(neuron, text):
    """Copies in the source core count destination axons: a profile that states them without
    ``fan_out_max`` in axons, or names an unknown method, is refused by field."""
    from neuroprune.chip.profile_reader import parse_profile
    from neuroprune.core.errors import ProfileError

    raw = {
        "schema_version": 1,
        "id": "x",
        "name": "x",
        "chip": {"cores": 4, "neurons_max": 64},
        "core": {"neurons_max": 16, "synapse_encoding": {"kind": "crossbar", "rows": 8, "cols": 8}},
        "neuron": {"models": ["LIF"], **neuron},
        "weights": {"bits": 1},
    }
    with pytest.raises(ProfileError) as info:
        parse_profile(raw)
    assert text in str(info.value), str(info.value)
