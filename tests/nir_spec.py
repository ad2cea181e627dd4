"""A NumPy simulator of a NIR graph written from NIR's specification text, not from neuroprune.

Sources: the equations in the docstrings of nir 1.0.8 (``nir/ir/neuron.py``, ``linear.py``,
``conv.py``, ``flatten.py``) and the NIR paper (Pedersen et al., Nat. Commun. 15, 8122, 2024),
which define every node as a continuous-time system and leave the integrator to the simulator.
This file integrates with forward Euler at the graph's ``dt``, as the NIR paper's reference
simulations do, starting every state at 0:

* ``Input``: the sample, reshaped to the node's shape (shapes exclude the batch).
* ``Affine``: ``y = W x + b``; ``Linear``: ``y = W x``.
* ``Conv2d``: ``y[c_o, i, j] = b[c_o] + sum_{c_i, k, l} W[c_o, c_i, k, l]
  x_pad[c_i, i s + k d, j s + l d]`` (cross-correlation, zero padding ``p``, stride ``s``,
  dilation ``d``, groups 1).
* ``Flatten``: merge dimensions ``start_dim..end_dim`` of one sample (C order).
* ``SumPool2d``: ``y[c, i, j] = sum_{k, l} x_pad[c, i s + k, j s + l]`` over the kernel window
  (stride ``s``, zero padding ``p``); ``AvgPool2d``: the same sum divided by ``kh kw``.
* ``LIF``: ``tau dv/dt = (v_leak - v) + R I`` -> ``v += (dt / tau) (v_leak - v + R I)``;
  ``z = v > v_threshold``; ``v = v_reset`` where ``z`` (``v_reset`` 0 when absent).
* ``IF``: ``dv/dt = R I`` -> ``v += dt R I``; same spike and reset.
* Several edges into one node: their signals sum. Within one step, nodes run in edge order
  (a spike reaches the next layer in the same step; no node here has a delay).

The output is the signal into each ``Output`` node and every spiking node's spikes per step.
"""

from __future__ import annotations

import numpy as np


def simulate(graph, x: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``x [T, N, *sample]``; returns node name -> ``[T, N, *shape]`` outputs
    for every LIF/IF and Output node (float64)."""
    order, preds = _order(graph)
    steps, n = x.shape[:2]
    states: dict[str, np.ndarray] = {}
    record: dict[str, list[np.ndarray]] = {}
    for t in range(steps):
        values: dict[str, np.ndarray] = {}
        for name in order:
            node = graph.nodes[name]
            kind = type(node).__name__
            if kind == "Input":
                shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).ravel())
                values[name] = np.asarray(x[t], np.float64).reshape(n, *shape)
                continue
            signal = sum(values[p] for p in preds[name])
            values[name] = _step(kind, node, signal, states, name, dt)
            if kind in ("LIF", "IF", "Output"):
                record.setdefault(name, []).append(values[name])
    return {k: np.stack(v) for k, v in record.items()}


def _order(graph):
    preds = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    order, done = [], set()
    while len(order) < len(graph.nodes):
        for name in graph.nodes:
            if name not in done and all(p in done for p in preds[name]):
                order.append(name)
                done.add(name)
    return order, preds


def _step(kind, node, s, states, name, dt):
    if kind == "Output":
        return s
    if kind == "Affine":
        return s @ np.asarray(node.weight, np.float64).T + np.asarray(node.bias, np.float64)
    if kind == "Linear":
        return s @ np.asarray(node.weight, np.float64).T
    if kind == "Flatten":
        start, end = int(node.start_dim) + 1, int(node.end_dim)  # +1: the batch axis
        end = s.ndim + end if end < 0 else end + 1
        return s.reshape(*s.shape[:start], -1, *s.shape[end + 1 :])
    if kind == "Conv2d":
        return _conv2d(node, s)
    if kind in ("SumPool2d", "AvgPool2d"):
        return _pool2d(kind, node, s)
    if kind in ("LIF", "IF"):
        return _neuron(kind, node, s, states, name, dt)
    raise NotImplementedError(kind)


def _conv2d(node, s):
    w = np.asarray(node.weight, np.float64)
    stride = np.broadcast_to(np.asarray(node.stride).ravel(), 2)
    pad = np.broadcast_to(np.asarray(node.padding).ravel(), 2)
    dil = np.broadcast_to(np.asarray(node.dilation).ravel(), 2)
    c_out, _, kh, kw = w.shape
    xp = np.pad(s, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    h_out = (xp.shape[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (xp.shape[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((s.shape[0], c_out, h_out, w_out))
    for k in range(kh):
        for m in range(kw):
            rows = slice(k * dil[0], k * dil[0] + stride[0] * (h_out - 1) + 1, stride[0])
            cols = slice(m * dil[1], m * dil[1] + stride[1] * (w_out - 1) + 1, stride[1])
            y += np.einsum("nchw,oc->nohw", xp[:, :, rows, cols], w[:, :, k, m])
    return y + np.asarray(node.bias, np.float64).reshape(1, c_out, 1, 1)


def _pool2d(kind, node, s):
    kh, kw = np.broadcast_to(np.asarray(node.kernel_size).ravel(), 2)
    stride = np.broadcast_to(np.asarray(node.stride).ravel(), 2)
    pad = np.broadcast_to(np.asarray(node.padding).ravel(), 2)
    xp = np.pad(s, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    h_out = (xp.shape[2] - kh) // stride[0] + 1
    w_out = (xp.shape[3] - kw) // stride[1] + 1
    y = np.zeros((*s.shape[:2], h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            window = xp[
                :, :, i * stride[0] : i * stride[0] + kh, j * stride[1] : j * stride[1] + kw
            ]
            y[:, :, i, j] = window.sum(axis=(2, 3))
    return y / (kh * kw) if kind == "AvgPool2d" else y


def _neuron(kind, node, current, states, name, dt):
    v = states.get(name, np.zeros_like(current))
    r = np.asarray(node.r, np.float64)
    if kind == "LIF":
        tau, v_leak = np.asarray(node.tau, np.float64), np.asarray(node.v_leak, np.float64)
        v = v + (dt / tau) * (v_leak - v + r * current)
    else:
        v = v + dt * r * current
    z = v > np.asarray(node.v_threshold, np.float64)
    reset = getattr(node, "v_reset", None)
    reset = 0.0 if reset is None else np.asarray(reset, np.float64)
    states[name] = np.where(z, reset, v)
    return z.astype(np.float64)


def read(path):
    """``nir.read`` of any file; on nir 1.0.4 a 1.0.8 file's ``v_reset`` (which 1.0.4's LIF/IF
    lack) is kept on the node as an attribute, so :func:`simulate` still resets to it."""
    import inspect

    import h5py
    import nir
    from nir.serialization import hdf2dict

    extra = {"type_check": False} if "type_check" in inspect.signature(nir.read).parameters else {}
    try:
        return nir.read(str(path), **extra)
    except TypeError:
        with h5py.File(path, "r") as f:
            data = hdf2dict(f["node"])
        resets = {k: n.pop("v_reset") for k, n in data["nodes"].items() if "v_reset" in n}
        graph = nir.dict2NIRNode(data)
        for name, value in resets.items():
            object.__setattr__(graph.nodes[name], "v_reset", value)
        return graph
