"""Synaptic memory cost models (layer L1, torch-free).

How many bits a group of synapses costs in one core, for each ``synapse_encoding.kind`` of a
chip profile (see :class:`neuroprune.profiles.SynapseEncoding`). Weight width ``w`` is the
profile's ``weights.bits``.

- ``blocked_list`` (Loihi, nengo-loihi's model): an input axon with ``k`` synapses into the core
  is cut into ``ceil(k / b)`` blocks of at most ``b`` synapses. A block of ``n`` synapses costs
  ``ceil((n * s + h) / W) * W`` bits with ``s = w + extra + index_bits`` (sparse) or
  ``s = w + extra`` (dense form, allowed when the axon reaches every neuron of the core),
  ``h`` the block header and ``W`` the word size.
- ``dense_matrix``: every (input used, neuron) position costs ``bits_per_synapse``.
- ``row_list``: ``bits_per_synapse`` per stored synapse, charged to the chip-level memory.
- ``crossbar``, ``cam``, ``conv_kernel``: no per-synapse memory inside a core (fixed tiles, CAM
  slots bounded by fan-in, or per-layer kernel memory checked by its own rule).
"""

from __future__ import annotations

import math

import numpy as np

from neuroprune.profiles import ChipProfile, SynapseEncoding


def _block_bits(n: np.ndarray, bits_per_synapse: int, enc: SynapseEncoding) -> np.ndarray:
    """Bits of blocks holding ``n`` synapses each (word-aligned, header included)."""
    word = enc.word_bits
    raw = n * bits_per_synapse + enc.block_header_bits
    return np.where(n > 0, -(-raw // word) * word, 0)


def blocked_list_bits(
    per_axon: np.ndarray, neurons_in_core: int, enc: SynapseEncoding, w: int
) -> int:
    """Bits for a core whose input axons carry ``per_axon[i]`` synapses each (blocked lists).

    Each axon takes the cheaper of its sparse form and, when it reaches every neuron of the
    core, its dense form (no index bits).
    """
    per_axon = np.asarray(per_axon, dtype=np.int64)
    per_axon = per_axon[per_axon > 0]
    if per_axon.size == 0:
        return 0
    b = enc.block_synapses or 64
    sparse_bits = w + enc.extra_bits_per_synapse + enc.index_bits
    dense_bits = w + enc.extra_bits_per_synapse
    full_blocks, rest = np.divmod(per_axon, b)
    sparse = full_blocks * _block_bits(np.int64(b), sparse_bits, enc) + _block_bits(
        rest, sparse_bits, enc
    )
    dense = full_blocks * _block_bits(np.int64(b), dense_bits, enc) + _block_bits(
        rest, dense_bits, enc
    )
    cost = np.where(per_axon >= neurons_in_core, np.minimum(sparse, dense), sparse)
    return int(cost.sum())


def core_memory_bits(profile: ChipProfile, per_axon: np.ndarray, neurons_in_core: int) -> int:
    """Synaptic memory (bits) that one core uses for the given synapses.

    ``per_axon``: synapses from each input axon into the neurons placed on this core.
    Returns 0 for encodings whose cores have no per-synapse memory (crossbar, cam, conv_kernel,
    row_list, which is charged at chip level by :func:`chip_memory_bits`).
    """
    enc = profile.core.encoding
    w = profile.weights.bits
    if enc.kind == "blocked_list":
        return blocked_list_bits(per_axon, neurons_in_core, enc, w)
    if enc.kind == "dense_matrix":
        used_inputs = int(np.count_nonzero(np.asarray(per_axon)))
        return used_inputs * neurons_in_core * (enc.bits_per_synapse or w)
    return 0


def chip_memory_bits(profile: ChipProfile, synapses: int) -> int:
    """Chip-level synaptic memory (bits) for ``synapses`` stored synapses (row_list only)."""
    enc = profile.core.encoding
    if enc.kind == "row_list":
        return synapses * (enc.bits_per_synapse or 32)
    return 0


def synapses_per_core(profile: ChipProfile, *, sparse: bool) -> int | None:
    """Largest number of synapses one core can store (an upper bound used for budgets).

    blocked_list: memory / bits per synapse with full blocks of ``b`` synapses,
    ``floor(M / (ceil((b*s + h)/W)*W) * b)``; dense_matrix: ``M // bits``; crossbar:
    ``rows * cols``; cam: ``neurons_max * fan_in_max``; row_list: chip memory / bits per synapse
    / cores; conv_kernel: ``None`` (memory is per layer).
    """
    enc = profile.core.encoding
    core = profile.core
    w = profile.weights.bits
    if enc.kind == "blocked_list" and core.synapse_memory_bits:
        b = enc.block_synapses or 64
        s = w + enc.extra_bits_per_synapse + (enc.index_bits if sparse else 0)
        block = int(_block_bits(np.int64(b), s, enc))
        return core.synapse_memory_bits // block * b
    if enc.kind == "dense_matrix" and core.synapse_memory_bits:
        return core.synapse_memory_bits // (enc.bits_per_synapse or w)
    if enc.kind == "crossbar" and enc.rows and enc.cols:
        return enc.rows * enc.cols
    if enc.kind == "cam" and profile.neuron.fan_in_max:
        return core.neurons_max * profile.neuron.fan_in_max
    if enc.kind == "row_list" and profile.chip_memory_bits:
        return profile.chip_memory_bits // (enc.bits_per_synapse or 32) // max(profile.cores, 1)
    return None


def conv_kernel_entries(c_in: int, c_out: int, kh: int, kw: int) -> int:
    """Kernel memory entries of a DYNAP-CNN style core:
    ``c_in * 2^(ceil(log2(kh*kw)) + ceil(log2(c_out)))``."""
    return c_in * 2 ** (math.ceil(math.log2(kh * kw)) + math.ceil(math.log2(max(c_out, 1))))


def conv_neuron_entries(c_out: int, h_out: int, w_out: int) -> int:
    """Neuron-state entries of a DYNAP-CNN style core:
    ``c_out * 2^(ceil(log2 H_out) + ceil(log2 W_out))``."""
    return c_out * 2 ** (math.ceil(math.log2(max(h_out, 1))) + math.ceil(math.log2(max(w_out, 1))))
