"""A new chip with a new synapse encoding is one capacity model, one registry entry and one
profile YAML: nothing else in the profile reader, the fit rules or the CLI names encodings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from neuroprune.chip.capacity import CAPACITY_MODELS, CapacityModel, Load, register_capacity_model
from neuroprune.cli.app import main

ROW_SLOTS = 100  # synapse slots in each neuron's row
SLOT_BITS = 8


class NeuronRows(CapacityModel):
    """A made-up chip: every neuron owns one row of ``max_row_length`` synapse slots of
    ``bits_per_synapse`` bits, used or not: ``memory = neurons x slots x bits`` per core."""

    kind = "neuron_rows"
    required_fields = ("bits_per_synapse", "max_row_length")
    needs_core_memory = True

    @property
    def row_bits(self) -> int:
        enc = self.profile.core.encoding
        return enc.max_row_length * enc.bits_per_synapse

    @property
    def memory_bits_max(self) -> int | None:
        return self.profile.core.synapse_memory_bits

    def memory_bits(self, load: Load) -> int:
        return load.neurons * self.row_bits

    def synapses_per_core(self, sparse: bool = True) -> int | None:
        return self.memory_bits_max // self.row_bits * self.profile.core.encoding.max_row_length


@pytest.fixture
def neuron_rows():
    register_capacity_model(NeuronRows)
    yield NeuronRows
    CAPACITY_MODELS.unregister(NeuronRows.kind)


def write_chip(folder: Path, *, kind: str, memory_bits: int) -> Path:
    """A two-core chip in the shape of examples/smallchip.yaml with the given encoding."""
    profile = {
        "schema_version": 1,
        "id": "rowchip",
        "name": "Row Test Chip",
        "vendor": "Example Lab",
        "chip": {"cores": 2, "neurons_max": 256},
        "core": {
            "neurons_max": 128,
            "input_axons_max": 512,
            "synapse_memory_bits": memory_bits,
            "synapse_encoding": {
                "kind": kind,
                "bits_per_synapse": SLOT_BITS,
                "max_row_length": ROW_SLOTS,
            },
        },
        "neuron": {"models": ["LIF", "IF"], "fan_in_max": 512},
        "weights": {"format": "int", "bits": 8, "params": {"bits": 8}},
    }
    path = folder / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    return path


def check(path: Path):
    """``neuroprune check --chip PATH --json`` (digits, the default 64-128-10 mlp)."""
    result = CliRunner().invoke(main, ["check", "--chip", str(path), "--json"])
    report = json.loads(result.output) if result.output.lstrip().startswith("{") else None
    return result, report


def test_new_encoding_is_costed_by_its_own_capacity_model(tmp_path, neuron_rows):
    result, report = check(write_chip(tmp_path, kind="neuron_rows", memory_bits=262_144))
    assert result.exit_code == 0, result.output
    assert report["fits"] is True
    # one row of 100 slots x 8 bits per neuron: 128 and 10 neurons; no other model charges this
    assert [core["memory_bits"] for core in report["per_core"]] == [
        128 * ROW_SLOTS * SLOT_BITS,
        10 * ROW_SLOTS * SLOT_BITS,
    ]


def test_new_encoding_gives_the_verdict(tmp_path, neuron_rows):
    # 138 neurons x 800 bits = 110,400 bits > 2 cores x 55,000: rows do not fit, although the
    # same network fits a dense_matrix chip of this size (its layers split over the two cores)
    result, report = check(write_chip(tmp_path, kind="neuron_rows", memory_bits=55_000))
    assert result.exit_code == 1, result.output
    assert report["fits"] is False and report["violations"]
    dense, dense_report = check(write_chip(tmp_path, kind="dense_matrix", memory_bits=55_000))
    assert dense.exit_code == 0 and dense_report["fits"] is True


def test_new_encoding_fields_are_required_by_the_model(tmp_path, neuron_rows):
    path = write_chip(tmp_path, kind="neuron_rows", memory_bits=262_144)
    raw = yaml.safe_load(path.read_text())
    del raw["core"]["synapse_encoding"]["max_row_length"]
    del raw["core"]["synapse_memory_bits"]
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["check", "--chip", str(path)])
    assert result.exit_code == 2
    assert "core.synapse_encoding.max_row_length" in result.output
    assert "core.synapse_memory_bits" in result.output


def test_unregistered_encoding_is_refused(tmp_path):
    path = write_chip(tmp_path, kind="neuron_rows", memory_bits=262_144)
    result = CliRunner().invoke(main, ["check", "--chip", str(path)])
    assert result.exit_code == 2 and "neuron_rows" in result.output
