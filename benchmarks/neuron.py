"""Speed of neuroprune's fused strict-threshold LIF against SpikingJelly's multi-step LIFNode.

Same input ``[T, B, N]``, same parameters (tau 2, v_th 1, hard reset, detach_reset, ATan):
one training step (forward + backward of ``(spikes * w).sum()``) and one eval forward, timed
alternately ``--repeats`` times in one process; the minimum of each is reported with the ratio
SpikingJelly / neuroprune (> 1 means the fused node is faster). The spikes are checked equal
(random inputs have no ties).

Example::

    python benchmarks/neuron.py --repeats 20
    python benchmarks/neuron.py --json   # one JSON line of milliseconds (benchmarks/stacks.py)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import machine  # noqa: E402  (benchmarks/common.py)
from spikingjelly.activation_based import neuron, surrogate

from neuroprune.models import neurons

# [T, B, N] of the recorded runs, and the first conv layer's map of the zoo conv at 28x28
SHAPES = ((8, 64, 512), (8, 64, 256), (8, 128, 1024), (8, 32, 8, 28, 28))


def make(cls):
    return cls(
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
        step_mode="m",
    )


def train_step(node, x, w) -> float:
    start = time.perf_counter()
    node.reset()
    xr = x.clone().requires_grad_(True)
    (node(xr) * w).sum().backward()
    return time.perf_counter() - start


def eval_step(node, x) -> float:
    start = time.perf_counter()
    node.reset()
    with torch.no_grad():
        node(x)
    return time.perf_counter() - start


def bench(shape, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    x, w = torch.randn(shape) * 1.5, torch.randn(shape)
    sj, ours = make(neuron.LIFNode), make(neurons.LIFNode)
    assert torch.equal(sj(x), ours(x))
    times = {k: [] for k in ("sj_train", "np_train", "sj_eval", "np_eval")}
    for node in (sj, ours):
        node.eval()
    for _ in range(repeats):
        for node, key in ((sj, "sj"), (ours, "np")):
            node.train()
            times[f"{key}_train"].append(train_step(node, x, w))
            node.eval()
            times[f"{key}_eval"].append(eval_step(node, x))
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON line of ms")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.json:
        rows = {"x".join(map(str, s)): bench(s, args.repeats) for s in SHAPES}
        print(json.dumps({k: {m: 1e3 * t for m, t in r.items()} for k, r in rows.items()}))
        return
    print(f"machine: {machine(args.threads)}")
    print("| T, B, N | SJ train ms | fused train ms | ratio | SJ eval ms | fused eval ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        r = bench(shape, args.repeats)
        print(
            f"| {shape} | {1e3 * r['sj_train']:.2f} | {1e3 * r['np_train']:.2f} | "
            f"{r['sj_train'] / r['np_train']:.2f}x | {1e3 * r['sj_eval']:.2f} | "
            f"{1e3 * r['np_eval']:.2f} | {r['sj_eval'] / r['np_eval']:.2f}x |"
        )


if __name__ == "__main__":
    main()
