"""SpiNNaker placement as sPyNNaker makes it: one population slice per core.

sPyNNaker (``SplitterPopulationVertexFixed.create_machine_vertices``, hardware_profiles
spinnaker.yaml source S61) cuts every population (a network layer) into fixed slices of at most
``max_atoms_per_core`` neurons (256 for IF_curr_exp / LIF, ``DEFAULT_MAX_ATOMS_PER_CORE``, S23)
and runs each slice as its own machine vertex on its own core: two populations never share a
core. The oracle below is written from that rule alone,

    cores = sum over layers of ceil(n_l / 256),    chips = ceil(cores / 16),

plus the chip's SDRAM (every synapse a 32-bit word, 2^30 bits per chip, charged to the chip of
the core that holds its target neuron), with the cores handed out to chips in layer order, 16
per chip. It never calls neuroprune's packer or capacity model; it reads the profile's numbers
only through constants checked against the YAML in ``test_the_oracle_reads_the_profile``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuroprune.chip.profiles import load_profile
from neuroprune.core.errors import BudgetError
from neuroprune.core.summary import LayerSummary, NetworkSummary
from neuroprune.fit.budget import derive_budget
from neuroprune.fit.rules import check_fit

ATOMS_PER_CORE = 256  # sPyNNaker DEFAULT_MAX_ATOMS_PER_CORE (LIF / IF_curr_exp)
CORES_PER_CHIP = 16  # application cores of a SpiNNaker-1 chip in typical use
SDRAM_BITS = 128 * 2**20 * 8  # 128 MiB per chip
WORD_BITS = 32  # one synapse word in a row


# --------------------------------------------------------------------------------------------
# The oracle


def slice_cores(widths: list[int]) -> list[tuple[int, int]]:
    """Every core the rule opens, in layer order: (layer index, neurons on the core)."""
    out = []
    for index, n in enumerate(widths):
        for start in range(0, n, ATOMS_PER_CORE):
            out.append((index, min(ATOMS_PER_CORE, n - start)))
    return out


def recount(widths: list[int], fan_in: list[int]) -> tuple[int, int, bool]:
    """(cores, chips, SDRAM holds) under one-population-slice-per-core placement.

    ``fan_in[l]``: synapses per neuron of layer ``l`` (uniform in the test networks), so a core
    with ``k`` neurons of layer ``l`` stores ``k * fan_in[l]`` words in its chip's SDRAM.
    """
    cores = slice_cores(widths)
    chips = max(1, math.ceil(len(cores) / CORES_PER_CHIP))
    sdram_ok = True
    for chip in range(chips):
        on_chip = cores[chip * CORES_PER_CHIP : (chip + 1) * CORES_PER_CHIP]
        bits = sum(k * fan_in[layer] * WORD_BITS for layer, k in on_chip)
        sdram_ok &= bits <= SDRAM_BITS
    return len(cores), chips, sdram_ok


# --------------------------------------------------------------------------------------------
# Networks


def layer(name: str, n_out: int, n_in: int, per_neuron: int, rng) -> LayerSummary:
    """A dense layer whose every neuron keeps ``per_neuron`` random inputs (sparse from the
    start, so 2,000-wide layers stay cheap)."""
    cols = np.concatenate([rng.choice(n_in, per_neuron, replace=False) for _ in range(n_out)])
    rows = np.repeat(np.arange(n_out), per_neuron)
    conn = sp.csr_matrix((np.ones(cols.size, dtype=bool), (rows, cols)), shape=(n_out, n_in))
    return LayerSummary(
        name=name,
        kind="dense",
        in_shape=(n_in,),
        out_shape=(n_out,),
        connectivity=conn,
        kernel_nonzeros=int(conn.nnz),
        kernel_entries=n_out * n_in,
        neuron_model="LIF",
    )


def mlp(sizes: list[int], per_neuron: list[int], seed: int = 0) -> NetworkSummary:
    rng = np.random.default_rng(seed)
    layers = tuple(
        layer(f"fc{i}", sizes[i + 1], sizes[i], per_neuron[i], rng) for i in range(len(sizes) - 1)
    )
    return NetworkSummary(layers, input_shape=(sizes[0],))


@st.composite
def nets(draw):
    depth = draw(st.integers(1, 5))
    sizes = [draw(st.integers(1, 2000)) for _ in range(depth + 1)]
    per_neuron = [draw(st.integers(1, min(8, n_in))) for n_in in sizes[:-1]]
    chips = draw(st.integers(1, 4))
    return sizes, per_neuron, chips


# --------------------------------------------------------------------------------------------
# Tests


def test_the_oracle_reads_the_profile():
    prof = load_profile("spinnaker")
    assert prof.core.layers_per_core == "one"
    assert prof.core.neurons_max == ATOMS_PER_CORE
    assert prof.cores == CORES_PER_CHIP
    assert prof.chip_memory_bits == SDRAM_BITS
    assert prof.core.encoding.bits_per_synapse == WORD_BITS


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=nets())
def test_verdict_and_cores_equal_the_one_population_per_core_recount(case):
    sizes, per_neuron, chips = case
    prof = load_profile("spinnaker")
    net = mlp(sizes, per_neuron)
    cores, chips_needed, sdram_ok = recount(sizes[1:], per_neuron)
    report = check_fit(net, prof, chips=chips)

    assert report.cores_used == cores
    assert report.cores_lower_bound == cores
    assert report.chips_needed == chips_needed
    assert report.fits == (cores <= chips * CORES_PER_CHIP and sdram_ok)
    # every core holds neurons of one layer only, at most 256 of them
    for core in report.packing.cores:
        assert len(core.layers) == 1 and core.neurons <= ATOMS_PER_CORE


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=nets())
def test_the_budget_refuses_fewer_cores_than_the_layers_need(case):
    sizes, per_neuron, _ = case
    prof = load_profile("spinnaker")
    net = mlp(sizes, per_neuron)
    cores, _, _ = recount(sizes[1:], per_neuron)
    derive_budget(prof, net, cores=cores)  # enough cores: a budget exists
    if cores > 1:
        with pytest.raises(BudgetError, match=rf"\b{cores} cores"):
            derive_budget(prof, net, cores=cores - 1)


@pytest.mark.parametrize(
    ("sizes", "cores"),
    [
        ([64, 128, 10], 2),  # 128 hidden on one core, 10 outputs on another
        ([64, 512, 256, 10], 4),  # the demo net (--hidden 512,256): 2 + 1 + 1
        ([64, 257, 10], 3),  # 257 neurons need two slices
        ([784, 100, 100, 100, 10], 4),  # 310 neurons would fit 2 cores if layers shared them
    ],
)
def test_worked_examples(sizes, cores):
    prof = load_profile("spinnaker")
    net = mlp(sizes, [min(4, n) for n in sizes[:-1]])
    report = check_fit(net, prof)
    assert (report.cores_used, report.cores_lower_bound) == (cores, cores)
    assert report.cores_set_by is not None and report.cores_set_by.cores == cores
    assert report.fits
    assert not check_fit(net, prof, cores=cores - 1).fits
