"""Benchmark: conv training throughput and start-up, before and after, against plain SpikingJelly.

Three measurements, each in a fresh child process whose ``PYTHONPATH`` is the checkout being
measured (this one, "after", and ``--before ROOT``), alternating row by row:

1. **start-up**: seconds from interpreter start to the end of the first ``deterministic(seed)``
   block (``import torch``, ``neuroprune.models.train``, switching on deterministic mode), and
   whether ``torch._inductor`` got imported;
2. **steps/s**: training steps per second (forward over T, loss, backward, Adam step, reset)
   on random 28x28x1 and 32x32x3 batches, alternating the nets within one child, fastest of
   ``--repeats`` blocks of ``--steps`` steps:

   * ``neuroprune conv``: the zoo ``conv`` model (8, 16 channels) stepped by neuroprune's own
     training loop (``train.loop._train_step``: encoding, the batch layout that version uses,
     forward, loss, backward, step, reset), prepared as ``train`` prepares it
     (``train.loop.place_model`` where the version has it);
   * ``spikingjelly conv``: the same architecture from plain SpikingJelly modules
     (``neuron.LIFNode``, its default multi-step implementation, ATan surrogate), NCHW,
     stepped by a loop of its own with the same encoding and loss;
   * ``neuroprune conv, model channels-last``: the zoo model after
     ``model.to(memory_format=torch.channels_last)`` (every weight), neuroprune's loop;
   * ``spikingjelly conv, channels-last``: the plain SpikingJelly net and its input batch in
     channels-last memory format (what the layout alone gives SpikingJelly);
   * ``neuroprune mlp``: the zoo ``mlp`` model (one hidden layer of 128), neuroprune's loop;

3. **conv epoch**: one epoch of ``neuroprune.train.loop.train`` on ``--images`` random
   28x28 images (batch 32, T = 8, direct encoding), the time ``train`` reports.

All with one torch thread. Random data: speed does not depend on what the pixels show.

Usage::

    PYTHONPATH=. python benchmarks/training.py --before DIR            # DIR: git archive of main
    PYTHONPATH=. python benchmarks/training.py --images 600 --steps 3  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import machine  # noqa: E402  (benchmarks/common.py)

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ((1, 28, 28), (3, 32, 32))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="checkout root of the code to compare with")
    parser.add_argument("--images", type=int, default=6000, help="images in the timed epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks (fastest kept)")
    parser.add_argument("--child", choices=("startup", "steps", "epoch"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Children (run with the measured checkout on sys.path)


def child_startup() -> dict:
    begin = time.perf_counter()
    import torch

    from neuroprune.train.loop import deterministic

    with deterministic(0):
        torch.zeros(1)
    return {"seconds": time.perf_counter() - begin, "inductor": "torch._inductor" in sys.modules}


def plain_spikingjelly_conv(input_shape, num_classes: int, channels=(8, 16)):
    """The zoo ``conv`` layout from SpikingJelly's own modules (``v >= v_th`` LIF)."""
    import torch
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    c, h, w = input_shape
    modules = []
    for i, c_out in enumerate(channels):
        stride = 1 if i == 0 else 2
        modules += [
            layer.Conv2d(c, c_out, 3, stride=stride, padding=1, bias=False),
            layer.BatchNorm2d(c_out),
            neuron.LIFNode(
                tau=2.0, v_reset=0.0, detach_reset=True, surrogate_function=surrogate.ATan()
            ),
        ]
        c, h, w = c_out, (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
    modules += [layer.Flatten(), layer.Linear(c * h * w, num_classes, bias=False)]
    modules.append(
        neuron.LIFNode(tau=2.0, v_reset=0.0, detach_reset=True, surrogate_function=surrogate.ATan())
    )
    net = torch.nn.Sequential(*modules)
    functional.set_step_mode(net, "m")
    return net


NETS = (
    "neuroprune conv",
    "spikingjelly conv",
    "neuroprune conv, model channels-last",
    "spikingjelly conv, channels-last",
    "neuroprune mlp",
)


def neuroprune_net(spec: str, shape, channels_last: bool = False):
    """A zoo model on the CPU as ``train`` prepares it (``place_model`` where it exists)."""
    import torch

    from neuroprune.models.zoo import build_model
    from neuroprune.train import loop

    model = build_model(spec, shape, 10, seed=0)
    place = getattr(loop, "place_model", None)
    model = place(model, torch.device("cpu")) if place else model
    return model.to(memory_format=torch.channels_last) if channels_last else model


def child_steps(args) -> dict:
    import torch
    from spikingjelly.activation_based import functional

    from neuroprune.train import loop

    torch.set_num_threads(1)
    config = loop.TrainConfig(timesteps=args.timesteps, batch_size=args.batch)
    rows = {}
    for shape in SHAPES:
        torch.manual_seed(0)
        nets = {
            "neuroprune conv": neuroprune_net("conv", shape),
            "spikingjelly conv": plain_spikingjelly_conv(shape, 10),
            "neuroprune conv, model channels-last": neuroprune_net("conv", shape, True),
            "spikingjelly conv, channels-last": plain_spikingjelly_conv(shape, 10).to(
                memory_format=torch.channels_last
            ),
            "neuroprune mlp": neuroprune_net("mlp", shape),
        }
        xb = torch.rand(args.batch, *shape)
        yb = torch.randint(0, 10, (args.batch,))
        optimizers = {k: torch.optim.Adam(n.parameters(), 1e-3) for k, n in nets.items()}
        best = dict.fromkeys(nets, float("inf"))

        def step(name, xb=xb, yb=yb, nets=nets, optimizers=optimizers):
            if name.startswith("neuroprune"):
                loop._train_step(nets[name], optimizers[name], xb, yb, config, None, ())
                return
            x = xb.unsqueeze(0).repeat(args.timesteps, 1, 1, 1, 1)  # direct encoding
            if name.endswith("channels-last"):
                x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
            spikes = nets[name](x)
            loss = torch.nn.functional.cross_entropy(spikes.sum(0), yb)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            functional.reset_net(nets[name])

        for name in nets:
            step(name)  # warm-up
        for _ in range(args.repeats):
            for name in nets:
                begin = time.perf_counter()
                for _ in range(args.steps):
                    step(name)
                best[name] = min(best[name], (time.perf_counter() - begin) / args.steps)
        rows["x".join(map(str, shape))] = {k: 1.0 / v for k, v in best.items()}
    return rows


def child_epoch(args) -> dict:
    import numpy as np
    import torch

    from neuroprune.data.dataset import Dataset
    from neuroprune.models.zoo import build_model
    from neuroprune.train.loop import TrainConfig, train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.random((args.images, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.images).astype(np.int64)
    data = Dataset("random28", x, y, x[:64], y[:64], 10)
    model = build_model("conv", (1, 28, 28), 10, seed=0)
    config = TrainConfig(epochs=1, timesteps=args.timesteps, batch_size=args.batch, lr=0.01)
    begin = time.perf_counter()
    train(model, data, config)
    return {"seconds": time.perf_counter() - begin}


# --------------------------------------------------------------------------------------------
# Parent


def measure(root: Path, what: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, __file__, "--child", what, "--images", str(args.images)]
    command += ["--batch", str(args.batch), "--timesteps", str(args.timesteps)]
    command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    out = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{what} child failed for {root}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        run = {
            "startup": child_startup,
            "steps": lambda: child_steps(args),
            "epoch": lambda: child_epoch(args),
        }[args.child]
        print(json.dumps(run()))
        return 0
    roots = {"after": ROOT}
    if args.before:
        roots["before"] = args.before.resolve()
    results = {what: {} for what in ("startup", "steps", "epoch")}
    for what in results:
        for name, root in roots.items():
            results[what][name] = measure(root, what, args)
            print(what, name, results[what][name], flush=True)
    print(f"\nCommand: `PYTHONPATH=. python benchmarks/training.py {' '.join(sys.argv[1:])}`")
    print(f"Machine: {machine(threads=1)}\n")
    print("| measurement | " + " | ".join(roots) + " |")
    print("|---|" + "---|" * len(roots))
    startup = results["startup"]
    print(
        "| start-up to first deterministic block, s | "
        + " | ".join(f"{startup[n]['seconds']:.2f}" for n in roots)
        + " |"
    )
    print(
        "| torch._inductor imported | "
        + " | ".join("yes" if startup[n]["inductor"] else "no" for n in roots)
        + " |"
    )
    epoch = results["epoch"]
    print(
        f"| conv epoch, {args.images} images 28x28, s | "
        + " | ".join(f"{epoch[n]['seconds']:.1f}" for n in roots)
        + " |"
    )
    for shape in results["steps"]["after"]:
        for net in NETS:
            cells = [f"{results['steps'][n][shape][net]:.2f}" for n in roots]
            print(f"| steps/s {shape} ({net}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
