"""The registry of export formats (torch-free): ``--format`` name -> :class:`ExportFormat`.

Every format's ``export`` has one signature::

    export(model, path, *, timesteps, encoding, input_shape, chip=None, progress=None) -> Path

The exporter is named lazily (``"module:function"``) so that ``neuroprune export --help``
reads the names without importing torch. Adding a format: an exporter function and one
``EXPORTERS.register`` line below. The deployment formats (``netx``, ``pynn``) are written from
the NIR file by the simulators' writers, so their exporters live a layer up, in
:mod:`neuroprune.pipeline.deploy` (named here by string, never imported).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroprune.core.registry import Lazy, Registry, lookup


@dataclass(frozen=True)
class ExportFormat:
    """One export format: ``name`` (CLI ``--format``), file ``suffix``, a description, the
    exporter (``"module:function"``, loaded on the first call of :meth:`export`) and the
    suffixes of the ``companions`` it writes beside the file (same stem; PyNN's ``.npz``)."""

    name: str
    suffix: str
    description: str
    exporter: str
    companions: tuple[str, ...] = ()

    @property
    def export(self) -> Callable[..., Path]:
        """The exporter function (imports torch)."""
        return Lazy(self.exporter).load()

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return self.export(*args, **kwargs)


EXPORTERS: Registry[ExportFormat] = Registry("export format", where="export", field="format")


def _format(fmt: ExportFormat) -> None:
    EXPORTERS.register(fmt.name, fmt)


_format(
    ExportFormat(
        "nir",
        ".nir",
        "NIR graph (HDF5) with dt, threshold semantics and quantization",
        "neuroprune.export.nir_export:export_nir",
    )
)
_format(
    ExportFormat(
        "rockpool-nir",
        ".nir",
        "NIR graph for Rockpool's importer (Linear + CubaLIF holding Xylo's integers; --chip xylo)",
        "neuroprune.export.rockpool_export:export_rockpool_nir",
    )
)
_format(
    ExportFormat(
        "onnx",
        ".onnx",
        "ONNX graph unrolled over T steps: [T, B, ...] -> spikes",
        "neuroprune.export.onnx_export:export_onnx_format",
    )
)
_format(
    ExportFormat(
        "netx",
        ".netx",
        "lava-dl netx HDF5 for Loihi/Loihi 2 (lava.lib.dl.netx.hdf5.Network)",
        "neuroprune.pipeline.deploy:export_netx",
    )
)
_format(
    ExportFormat(
        "pynn",
        ".py",
        "PyNN script + .npz weights for SpiNNaker (pyNN.spiNNaker)",
        "neuroprune.pipeline.deploy:export_pynn",
        companions=(".npz",),
    )
)


def get_exporter(name: str) -> ExportFormat:
    """The registered format ``name``; :class:`ConfigError` naming the known ones otherwise."""
    return lookup(EXPORTERS, name)
