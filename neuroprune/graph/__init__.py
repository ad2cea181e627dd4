"""The one owner of neuroprune's NIR files (layer L1, torch-free): stages, writing, reading.

Modules: :mod:`.stages` (the per-layer vocabulary), :mod:`.write` (stages -> NIR graph -> file),
:mod:`.files` (reading a file: metadata, order, legacy and newer files), :mod:`.read`
(NIR nodes -> stages, with every check), :mod:`.neurons` (NIR neuron nodes -> neuron stages).

Export writes through :func:`build_graph`/:func:`write_graph`; the SpikingJelly importer
(:mod:`neuroprune.models.nir_model`) and the simulators (:mod:`neuroprune.sim.spec`) read through
:func:`read_network`. Between the two sits one per-layer vocabulary, the frozen
:class:`FlattenStage`, :class:`SynapseStage` and :class:`NeuronStage` (SpikingJelly units).

Semantics of a written file (NIR's own; nir 1.0.8 ``nir/ir/neuron.py``):

* forward Euler with step ``dt`` seconds (graph metadata ``dt``), state starting at 0;
* ``Affine``: ``I = W x + b``; ``Conv2d``: cross-correlation with stride/padding, plus bias;
* ``LIF``: ``v <- v + (dt/tau) (v_leak - v + r I)``; ``IF``: ``v <- v + dt r I``;
* spike ``z = v > v_threshold`` (strict), then ``v <- v_reset`` (0) where ``z``;
* shapes exclude the batch; a ``Flatten`` (``start_dim=0``) flattens one sample.

Mapping of a SpikingJelly neuron (tau in steps, forward Euler, ``dt`` seconds per step):
``LIFNode(tau_sj, decay_input=True)`` -> ``LIF(tau = tau_sj dt, r = 1, v_leak = 0)``,
``decay_input=False`` -> ``r = tau_sj``; ``IFNode`` -> ``IF(r = 1/dt)``. SpikingJelly fires
on ``H >= v_th`` in float32; the file then holds ``v_threshold = nextafter32(v_th, -inf)``,
under which NIR's strict ``>`` fires on exactly the same float32 potentials. A model whose
neurons fire on ``>`` keeps ``v_th``.

Storage (works on nir 1.0.4, whose ``Linear``/``Conv2d`` have no ``metadata``, and on 1.0.8):
node metadata is never put on nodes. Graph metadata is flat (HDF5 scalars and strings); the
per-node dicts live in one JSON string ``neuroprune_nodes`` keyed by node name. Dense layers
are always ``Affine`` (zero bias when there is none): Sinabs imports only ``Affine``. A
``Flatten`` right after the input is not written: the ``Input`` node takes the flat shape
(importers apply ``Flatten`` to batched tensors, which would merge the batch), and
``input_shape`` in the metadata keeps the sample's shape.
"""
