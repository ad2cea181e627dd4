"""Fit analysis (layer L2, torch-free): does a network fit a chip allocation, and how?

Modules: :mod:`.budget` (the synapse budget B), :mod:`.packing` (layers onto cores),
:mod:`.rules` (the fit rules and :func:`~.rules.check_fit`), :mod:`.allocation` (capacity of an
allocation), :mod:`.traffic` (spikes across chips), :mod:`.report` (the result types).

1. :func:`pack` places every layer's neurons on cores. Whether a set of layer groups fits a
   core is asked of the profile's capacity model (:mod:`neuroprune.chip.capacity`), which costs the
   core from everything on it (the union of its input axons and all its neurons). Cores are
   numbered across chips (``chip = core // chip.cores``); a chip also caps its neurons and, for
   ``row_list`` chips, its shared synapse memory. Several placements are tried (next-fit in
   layer order, first-fit in layer order, first-fit by decreasing layer size) and the one
   with the fewest broken limits, then the fewest cores, is kept. A neuron (or, on
   ``conv_kernel`` chips, a layer) that does not fit even an empty core is placed alone, and
   the recount of its core reports it.
2. Each rule in :data:`FIT_RULES` is a small named function ``rule(ctx) -> list[Finding]``.
3. :func:`check_fit` runs them all and returns a :class:`FitReport`. "Does not fit" is a report
   and an exit code (1), never an exception.
"""
