"""Does ``torch.compile`` pay back in a CPU training run? Compile time and steps/s, eager vs compiled.

For the zoo ``conv`` (neuroprune's training path: ``train.loop.place_model`` and
``train.loop._train_step``'s batch layout) and the plain SpikingJelly conv of
``benchmarks/training.py``, 28x28x1, batch 32, T = 8, one torch thread: the model wrapped in
``torch.compile`` (inductor, default mode), each in a fresh child process:

* **cold**: an empty inductor cache (``TORCHINDUCTOR_CACHE_DIR`` a new folder): seconds of the
  first training step (tracing, inductor's C++ code generation and compilation), then steps/s;
* **warm**: a second child on the same cache: seconds of the first step;
* **eager**: steps/s without compiling, in the same child as the compiled one.

Steps/s = fastest of ``--repeats`` blocks of ``--steps`` steps. The break-even training time is
``compile seconds / (1 - eager steps/s / compiled steps/s)`` when compiling is faster per step
(never otherwise); the demo trains for about 20 s.

Usage::

    PYTHONPATH=. python benchmarks/compile.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine  # noqa: E402  (benchmarks/common.py)

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 28, 28)
NETS = ("neuroprune conv", "spikingjelly conv")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=NETS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(args) -> dict:
    import torch
    from spikingjelly.activation_based import functional
    from training import plain_spikingjelly_conv

    from neuroprune.models.zoo import build_model
    from neuroprune.train import loop

    torch.set_num_threads(1)
    config = loop.TrainConfig(timesteps=8, batch_size=32)
    xb, yb = torch.rand(32, *SHAPE), torch.randint(0, 10, (32,))

    def make():
        torch.manual_seed(0)
        if args.child == "neuroprune conv":
            return loop.place_model(build_model("conv", SHAPE, 10, seed=0), torch.device("cpu"))
        return plain_spikingjelly_conv(SHAPE, 10)

    def stepper(model, run):
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)

        def step():
            spikes = run(loop.model_input(xb, 8, "direct", None))
            loss = loop.spike_loss(spikes, yb, config.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            functional.reset_net(model)

        return step

    eager_model, compiled_model = make(), make()
    steps = {
        "eager": stepper(eager_model, eager_model),
        "compiled": stepper(compiled_model, torch.compile(compiled_model)),
    }
    begin = time.perf_counter()
    steps["compiled"]()
    first = time.perf_counter() - begin
    steps["eager"]()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(args.repeats):
        for name, step in steps.items():
            begin = time.perf_counter()
            for _ in range(args.steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - begin) / args.steps)
    return {"first_step_s": first, **{f"{k}_steps_per_s": 1.0 / v for k, v in best.items()}}


def run_child(net: str, cache: str, args) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
        TORCHINDUCTOR_CACHE_DIR=cache,
    )
    command = [sys.executable, __file__, "--child", net]
    command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{net} child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def break_even(compile_s: float, eager: float, compiled: float) -> str:
    if compiled <= eager:
        return "never (compiled is slower per step)"
    return f"{compile_s / (1.0 - eager / compiled):.0f} s of training"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    print(f"Command: `{' '.join(['PYTHONPATH=. python benchmarks/compile.py', *sys.argv[1:]])}`")
    print(f"Machine: {machine(threads=1)}\n")
    print(
        "| net | first compiled step, cold cache, s | same, warm cache, s | eager steps/s | ",
        end="",
    )
    print("compiled steps/s | break-even (cold) |")
    print("|---|---|---|---|---|---|")
    for net in NETS:
        with tempfile.TemporaryDirectory() as cache:
            cold = run_child(net, cache, args)
            warm = run_child(net, cache, args)
        eager, compiled = cold["eager_steps_per_s"], cold["compiled_steps_per_s"]
        print(
            f"| {net} | {cold['first_step_s']:.1f} | {warm['first_step_s']:.1f} | {eager:.1f} | "
            f"{compiled:.1f} | {break_even(cold['first_step_s'], eager, compiled)} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
