"""The registry of synapse encodings (layer L1, torch-free and light): ``core.synapse_encoding
.kind`` -> :class:`~neuroprune.chip.capacity.CapacityModel` subclass.

The built-in models are named lazily (``"module:Class"``) so that reading the names (profile
validation, ``--help``) does not import the capacity models' numerics. A new chip family is one
``CapacityModel`` subclass registered with
:func:`neuroprune.chip.capacity.register_capacity_model` and one profile YAML.
"""

from __future__ import annotations

from typing import Any

from neuroprune.core.errors import ProfileError
from neuroprune.core.registry import Registry

# Values are CapacityModel subclasses (neuroprune.chip.capacity). Typed Any here: naming that
# class would import capacity.py, which imports this module.
CAPACITY_MODELS: Registry[Any] = Registry(
    "synapse encoding", where="core.synapse_encoding.kind", field="kind", error=ProfileError
)
for _kind, _cls in (
    ("blocked_list", "BlockedList"),
    ("dense_matrix", "DenseMatrix"),
    ("crossbar", "Crossbar"),
    ("cam", "Cam"),
    ("row_list", "RowList"),
    ("conv_kernel", "ConvKernel"),
    ("population", "Population"),
):
    CAPACITY_MODELS.register_lazy(_kind, f"neuroprune.chip.capacity:{_cls}")
