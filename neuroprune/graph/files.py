"""Reading a NIR file: the graph, its metadata, node order, legacy and newer files, and the
one-line errors for files neuroprune cannot read.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neuroprune.core.errors import ArtifactError, UnsupportedError
from neuroprune.graph.stages import MAPPABLE_TYPES, NODES_KEY, REEXPORT, SUPPORTED_TYPES

# --------------------------------------------------------------------------------------------
# Reading: file, metadata, order


def read_graph(path: str | os.PathLike):
    """``nir.read`` with one-line errors: missing/corrupt file -> :class:`ArtifactError`; a node
    type neuroprune cannot map -> :class:`UnsupportedError` naming the node and its type."""
    import nir  # deferred: imports nir

    path = Path(path)
    for name, kind in _node_types(path).items():
        if kind not in MAPPABLE_TYPES:
            raise unsupported_node(str(path), name, kind)
    try:
        return nir.read(path, **_no_type_check(nir.read))
    except TypeError:  # a field this nir does not know (a 1.0.8 file, e.g. v_reset, on 1.0.4)
        return _read_newer_file(path)
    except Exception as exc:  # h5py/nir raise many types for a corrupt file
        raise _corrupt(path, exc) from exc


def _read_newer_file(path: Path):
    """Read a file written by a newer nir: drop the fields the installed nir's node classes
    lack, after checking that dropping them changes nothing (``v_reset`` must be 0)."""
    import h5py  # deferred: imports h5py
    import nir  # deferred: imports nir
    from nir.serialization import hdf2dict  # deferred: imports nir

    try:
        with h5py.File(path, "r") as f:
            data = hdf2dict(f["node"])
        for name, node in data["nodes"].items():
            _drop_unknown_fields(name, node, str(path))
        return nir.dict2NIRNode(data)
    except UnsupportedError:
        raise
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def _drop_unknown_fields(name: str, node: dict[str, Any], where: str) -> None:
    import nir  # deferred: imports nir

    kind = _text(node["type"])
    known = {f.name for f in dataclasses.fields(getattr(nir, kind))} | {"type", "shape"}
    for key in sorted(set(node) - known):
        value = node.pop(key)
        if key == "v_reset" and np.any(np.asarray(value, dtype=np.float64) != 0):
            raise _bad_param(name, kind, "v_reset", "nonzero", "Use 0 (hard reset to zero).", where)


def _no_type_check(func) -> dict[str, bool]:
    """``type_check=False`` where nir has it (1.0.8; shapes are checked here, one line each)."""

    return {"type_check": False} if "type_check" in inspect.signature(func).parameters else {}


def unsupported_node(where: str, name: str, kind: str, why: str = "") -> UnsupportedError:
    """One-line error for a node neuroprune cannot map (names the node and its type)."""
    return UnsupportedError(
        f"node {name!r} ({kind}) cannot be imported{': ' + why if why else ''}",
        where=where,
        field=f"{name}.type",
        value=kind,
        fix=f"Use only {', '.join(SUPPORTED_TYPES)} nodes in a feed-forward chain.",
    )


def _node_types(path: Path) -> dict[str, str]:
    import h5py  # deferred: imports h5py

    if not path.is_file():
        raise ArtifactError(
            "NIR file not found", where=str(path), fix="Check the path or export the model first."
        )
    try:
        with h5py.File(path, "r") as f:
            root = f["node"]
            if _text(root["type"][()]) != "NIRGraph":
                raise ValueError(f"top-level node is {_text(root['type'][()])}, not NIRGraph")
            return {str(k): _text(v["type"][()]) for k, v in root["nodes"].items()}
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: Exception) -> ArtifactError:
    detail = " ".join(str(exc).split())[:160]
    return ArtifactError(
        f"cannot read NIR file (truncated or corrupt: {type(exc).__name__}: {detail})",
        where=str(path),
        fix=REEXPORT,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def graph_metadata(graph) -> dict[str, Any]:
    """Decoded graph metadata: plain Python scalars, ``input_shape`` a tuple, ``chip`` None when
    stored as ``""``, ``neuroprune_nodes`` a dict of node dicts."""
    meta = {str(k): _plain(v) for k, v in (getattr(graph, "metadata", None) or {}).items()}
    if meta.get("chip") == "":
        meta["chip"] = None
    if "input_shape" in meta:
        meta["input_shape"] = tuple(int(s) for s in np.asarray(meta["input_shape"]).ravel())
    nodes = meta.get(NODES_KEY)
    meta[NODES_KEY] = json.loads(nodes) if isinstance(nodes, str) else _legacy_nodes(graph)
    return meta


def _legacy_nodes(graph) -> dict[str, dict[str, Any]]:
    """Format-1 files kept node dicts on the nodes (``neuroprune_quant`` as a JSON string)."""
    nodes = {}
    for name, node in graph.nodes.items():
        meta = {str(k): _plain(v) for k, v in (getattr(node, "metadata", None) or {}).items()}
        if isinstance(meta.get("neuroprune_quant"), str):
            meta["neuroprune_quant"] = json.loads(meta["neuroprune_quant"])
        if meta:
            nodes[name] = meta
    return nodes


def node_metadata(graph, name: str) -> dict[str, Any]:
    """Neuroprune's metadata of node ``name`` (empty for files other tools wrote)."""
    return dict(graph_metadata(graph)[NODES_KEY].get(name, {}))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def topological_order(graph, where: str) -> list[str]:
    """Node names with every node after all its predecessors (Kahn's algorithm).

    Several edges into one node are allowed here (their signals sum); a cycle is a recurrent
    edge and raises :class:`UnsupportedError` naming a node on it. Exactly one Input node.
    """
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    inputs = [name for name, kind in kinds.items() if kind == "Input"]
    if len(inputs) != 1:
        raise UnsupportedError(
            f"the graph has {len(inputs)} Input nodes; neuroprune needs exactly one",
            where=where,
            field="Input",
            value=", ".join(sorted(inputs)) or "none",
            fix="Export a network with a single input.",
        )
    preds = predecessors(graph)
    remaining = {name: len(preds[name]) for name in kinds}
    ready = [inputs[0]] + sorted(n for n, k in remaining.items() if k == 0 and n != inputs[0])
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for dst in successors(graph).get(name, []):
            remaining[dst] -= 1
            if remaining[dst] == 0:
                ready.append(dst)
    if len(order) != len(kinds):
        stuck = sorted(set(kinds) - set(order))[0]
        raise UnsupportedError(
            f"recurrent edge: node {stuck!r} ({kinds[stuck]}) lies on a cycle",
            where=where,
            field=f"{stuck}.edges",
            value=", ".join(f"{a}->{b}" for a, b in graph.edges if b == stuck),
            fix="Use a feed-forward graph (no recurrent connections).",
        )
    return order


def predecessors(graph) -> dict[str, list[str]]:
    """Node -> the nodes with an edge into it (in edge order)."""
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)
    return preds


def successors(graph) -> dict[str, list[str]]:
    """Node -> the nodes its edges lead to (in edge order)."""
    succ: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        succ.setdefault(src, []).append(dst)
    return succ


def _shape_error(name, kind, weight_shape, shape, where, what="weight") -> ArtifactError:
    return ArtifactError(
        f"node {name!r} ({kind}): {what} of shape {tuple(weight_shape)} does not fit its "
        f"input {shape}",
        where=where,
        field=f"{name}.{what}",
        value=tuple(weight_shape),
        fix=REEXPORT,
    )


def _bad_param(name, kind, field, value, fix, where) -> UnsupportedError:
    return UnsupportedError(
        f"node {name!r} ({kind}): unsupported {field}",
        where=where,
        field=f"{name}.{field}",
        value=value,
        fix=fix,
    )
