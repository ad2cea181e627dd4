"""neuroprune's Xylo verdict (``check_fit`` on ``hardware_profiles/xylo.yaml``) equals Rockpool's
(``rockpool.devices.xylo.syns61201.mapper`` and its design-rule check, run by
``tests/xylo_oracle.py`` in the ``lava`` backend environment with a stand-in for the samna
driver import, which the mapper never calls) on random mlps and on the ones just over each
limit: input channels, hidden neurons (in one layer or split), readout neurons, no hidden
layer. All shapes go to the oracle in one subprocess call."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_xylo_arithmetic import oracle

from neuroprune.chip.profiles import load_profile
from neuroprune.fit.rules import check_fit
from neuroprune.models import summarize
from neuroprune.models.zoo import build_model

XYLO = load_profile("xylo")

# At and just over each of Rockpool's limits (16 inputs, 1000 hidden, 8 readout, >= 1 hidden
# layer), and a hidden population split over layers.
EDGES = [
    [16, 1000, 8],
    [17, 1000, 8],
    [16, 1001, 8],
    [16, 1000, 9],
    [16, 8],
    [16, 500, 500, 8],
    [16, 500, 501, 8],
    [16, 333, 333, 334, 8],
    [16, 333, 333, 335, 8],
    [1, 1, 1],
    [17, 1, 1],
    [16, 1, 9],
]

widths = st.integers(1, 600)
shapes = st.builds(
    lambda inputs, hidden, readout: [inputs, *hidden, readout],
    st.integers(1, 24),
    st.lists(widths, min_size=0, max_size=3),
    st.integers(1, 12),
)


def neuroprune_fits(shape: list[int]) -> bool:
    inputs, *hidden, readout = shape
    net = build_model("mlp", (inputs,), readout, hidden=tuple(hidden), neuron="lif")
    return check_fit(summarize(net, (inputs,), 1, name="mlp"), XYLO).fits


@pytest.mark.lava
@pytest.mark.slow
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(shapes, min_size=100, max_size=100))
def test_verdicts_equal_rockpools_mapper(random_shapes):
    cases = EDGES + random_shapes
    vendor = oracle("mapper", cases)
    mine = [neuroprune_fits(shape) for shape in cases]
    disagree = [
        (shape, verdict, fits)
        for shape, verdict, fits in zip(cases, vendor, mine, strict=True)
        if (verdict == "fits") != fits
    ]
    assert not disagree, disagree
    # the batch holds both verdicts and every limit's edge
    assert {verdict == "fits" for verdict in vendor} == {True, False}
