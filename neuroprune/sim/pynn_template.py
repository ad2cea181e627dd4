#!/usr/bin/env python3
# ruff: noqa
"""__TITLE__

A PyNN script for SpiNNaker (sPyNNaker), written by neuroprune __VERSION__ with its weights
in the file beside it (__WEIGHTS__, numpy .npz: no pickle). On a SpiNNaker machine:

    python __SCRIPT__ --input samples.npz --out counts.npz

``--input``: an .npz whose ``spikes`` is uint8 [samples, T, inputs] (or [samples, T, *shape]):
one frame of input spikes per 1 ms step. ``--out``: per layer, the spike counts of every sample
over its T steps (``counts<k>`` int32 [samples, neurons]). ``--simulator NAME`` runs the same
network on another PyNN backend (nest, mock; brian2 runs it too, but its step order differs:
it tests the threshold before the step's synaptic jumps, so counts differ).

The network (neuroprune's SpiNNaker mapping, neuroprune/chip/arithmetic/spinnaker.py): one
Population of IF_curr_delta per layer, v_rest = v_reset = 0 mV, tau_refrac = 0 ms,
tau_m = -dt / ln(1 - 1/tau) so V decays by (1 - 1/tau) per 1 ms step, cm = tau_m / R with
R = 1 MOhm (SpikingJelly's decay_input) or tau, v_thresh = threshold_int * 2**(s - 15) mV and
weights = weight_int * 2**(s - 15) nA (s: the layer's s16.15 ring-buffer shift), the bias as
i_offset; at most MAX_ATOMS_PER_CORE neurons per core. Each layer's synapses are two
FromListConnector projections (receptor 'excitatory' with weights > 0, 'inhibitory' with
weights < 0, PyNN's sign convention for current-based synapses; sPyNNaker stores |weight| and
takes the sign from the receptor, synapse_dynamics_static.py), delay 1 ms. sPyNNaker scales
the weights to its 16-bit ring-buffer words itself. Spikes enter
from a SpikeSourceArray; every layer records its spikes.

Units of a delta synapse: sPyNNaker adds a delta weight w (nA) as a one-step current through
the membrane (neuron_model_lif_impl.h: V = alpha - exp_TC (alpha - V), alpha = w R + V_rest),
so V rises by w R (1 - exp(-dt/tau_m)); PyNN's standard IF_curr_delta (NEST, Brian 2) reads
the weight as that jump in mV. On any simulator other than spiNNaker the script passes
w R (1 - exp(-dt/tau_m)), so both mean one network. Off SpiNNaker this is a float simulation
of the network description, not SpiNNaker's s16.15 fixed point.

Off SpiNNaker the simulator runs at 0.1 ms resolution with tau_refrac = 0.1 ms (NEST needs a
refractory period of at least one resolution step; SpiNNaker has none, tau_refrac = 0): inputs
arrive only on the 1 ms grid, so a neuron that fires at t is never refractory when the next
input comes, and V decays by exactly (1 - 1/tau) from one grid point to the next.

Samples run one after another in one simulation, separated by silent steps in which every V
decays to 0 (to float64 precision; gap_steps()).
"""

import argparse
import importlib
import math
from pathlib import Path

import numpy as np

TIMESTEP_MS = 1.0  # one step of the trained network
FINE_RESOLUTION_MS = 0.1  # off SpiNNaker (see the docstring)
DELAY_MS = 1.0
MAX_ATOMS_PER_CORE = __MAX_ATOMS__
TIMESTEPS = __TIMESTEPS__
INPUT_SHAPE = __INPUT_SHAPE__
LAYERS = __LAYERS__
WEIGHTS = Path(__file__).with_name("__WEIGHTS__")
CELL = "IF_curr_delta"


def jump_scale(layer, simulator):
    """Factor from the file's weights (sPyNNaker's nA) to the simulator's delta weight."""
    if simulator == "spiNNaker":
        return 1.0
    r = layer["tau_m"] / layer["cm"]
    return r * (1.0 - math.exp(-TIMESTEP_MS / layer["tau_m"]))


def resolution(simulator):
    """The simulator's time step (ms): SpiNNaker's 1 ms, else FINE_RESOLUTION_MS."""
    return TIMESTEP_MS if simulator == "spiNNaker" else FINE_RESOLUTION_MS


def build(sim, simulator, data):
    """The input source and one population per layer (with spike recording)."""
    cell_type = getattr(sim, CELL)
    if hasattr(sim, "set_number_of_neurons_per_core"):
        sim.set_number_of_neurons_per_core(cell_type, MAX_ATOMS_PER_CORE)
    inputs = int(np.prod(INPUT_SHAPE))
    source = sim.Population(
        inputs, sim.SpikeSourceArray(spike_times=[[] for _ in range(inputs)]), label="input"
    )
    populations, previous = [], source
    for k, layer in enumerate(LAYERS):
        cells = cell_type(
            tau_m=layer["tau_m"],
            cm=layer["cm"],
            v_rest=0.0,
            v_reset=0.0,
            v_thresh=layer["v_thresh"],
            tau_refrac=0.0 if simulator == "spiNNaker" else resolution(simulator),
            i_offset=data[f"i_offset{k}"],
        )
        population = sim.Population(layer["neurons"], cells, label=layer["name"])
        if simulator != "nest":  # NEST cannot set an initial V; the lead-in gap clears it
            population.initialize(v=0.0)
        population.record("spikes")
        scale = jump_scale(layer, simulator)
        for receptor in ("excitatory", "inhibitory"):
            pre, post = data[f"pre{k}_{receptor}"], data[f"post{k}_{receptor}"]
            if len(pre) == 0:
                continue
            weights = data[f"weight{k}_{receptor}"] * scale
            rows = np.column_stack([pre, post, weights, np.full(len(pre), DELAY_MS)])
            sim.Projection(
                previous,
                population,
                sim.FromListConnector(rows, column_names=["weight", "delay"]),
                synapse_type=sim.StaticSynapse(),
                receptor_type=receptor,
                label=f"{layer['name']}_{receptor}",
            )
        populations.append(population)
        previous = population
    return source, populations


def gap_steps():
    """Silent steps before and between samples: enough for the slowest layer's V to decay
    by 2**-40 (V decays by exp(-dt/tau_m) per step with no input), so that every sample starts
    from V = 0 to float64 precision (NEST cannot reset, nor set an initial V)."""
    slowest = max(layer["tau_m"] for layer in LAYERS)
    return int(math.ceil(40 * math.log(2) * slowest / TIMESTEP_MS))


def spike_times(spikes, period, lead):
    """Per input neuron, the times (ms) of its spikes: step t of sample n is sent at
    (lead + n period + t + 1) ms."""
    from pyNN.parameters import Sequence

    samples, steps = spikes.shape[:2]
    flat = spikes.reshape(samples * steps, -1)
    sample, step = np.divmod(np.arange(samples * steps), steps)
    stamps = (lead + sample * period + step + 1.0) * TIMESTEP_MS
    return [Sequence(stamps[np.flatnonzero(flat[:, i])]) for i in range(flat.shape[1])]


def count(population, first, period, samples, neurons):
    """Spikes per sample and neuron in each sample's window of T steps (the step stamps
    first + n period .. first + n period + T - 1)."""
    counts = np.zeros((samples, neurons), dtype=np.int32)
    block = population.get_data("spikes")
    if not block.segments:
        return counts
    for index, train in enumerate(block.segments[-1].spiketrains):
        times = np.asarray(getattr(train, "magnitude", train), dtype=float)
        offset = np.rint(times / TIMESTEP_MS).astype(np.int64) - first
        sample, step = np.divmod(offset, period)
        inside = (offset >= 0) & (step < TIMESTEPS) & (sample < samples)
        neuron = int(train.annotations.get("source_index", index))
        np.add.at(counts[:, neuron], sample[inside], 1)
    return counts


def run(simulator, spikes, samples=None):
    """Build the network on ``pyNN.<simulator>`` and run every sample in one simulation,
    ``gap_steps()`` silent steps before and between them; counts per layer [N, neurons]."""
    sim = importlib.import_module(f"pyNN.{simulator}")
    data = np.load(WEIGHTS)
    spikes = np.asarray(spikes, dtype=np.uint8)
    if samples is not None:
        spikes = spikes[:samples]
    spikes = spikes.reshape(len(spikes), TIMESTEPS, -1)
    sim.setup(timestep=resolution(simulator), min_delay=DELAY_MS)
    source, populations = build(sim, simulator, data)
    lead = gap_steps()
    period = TIMESTEPS + lead
    source.set(spike_times=spike_times(spikes, period, lead))
    sim.run((lead + len(spikes) * period + len(LAYERS) + 2) * TIMESTEP_MS)
    # input step 0 (sent at lead + 1) reaches layer k at lead + k + 2: one delay per layer
    counts = [
        count(population, lead + k + 2, period, len(spikes), LAYERS[k]["neurons"])
        for k, population in enumerate(populations)
    ]
    sim.end()
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", default="spiNNaker", help="pyNN.<NAME> [spiNNaker]")
    parser.add_argument("--input", required=True, help=".npz with spikes [N, T, inputs]")
    parser.add_argument("--samples", type=int, help="first N samples only")
    parser.add_argument("--out", help=".npz for the spike counts per layer")
    args = parser.parse_args(argv)
    spikes = np.load(args.input)["spikes"]
    counts = run(args.simulator, spikes, args.samples)
    if args.out:
        np.savez(args.out, **{f"counts{k}": c for k, c in enumerate(counts)})
    for layer, c in zip(LAYERS, counts):
        print(f"{layer['name']}: {c.sum(axis=1).mean():.2f} spikes per sample")


if __name__ == "__main__":
    main()
