"""Sweeps (layer L9): one ``fit`` run per (chip, method, budget or sparsity), on Ray Tune.

Modules: :mod:`.plan` (every value checked before any trial), :mod:`.trials` (trial
bookkeeping and resume), :mod:`.run` (grid or Optuna search), :mod:`.tune` (Ray Tune, imported
only when trials run), :mod:`.results` (rows, Pareto fronts, files).

``plan_sweep`` validates every value and builds every trial's :class:`RunConfig` before any
trial starts (unknown chip, method, dataset, a value that is not a number or out of range, a
budget the chip cannot hold: one error, nothing written). ``run_sweep`` then runs the trials:

* on Ray Tune: an embedded local Ray (``ray.init(num_cpus=<machine cores>)``, no dashboard) by
  default, or the cluster at ``ray_address``; each trial takes 1 CPU, at most ``workers`` run
  at once, and Ray is shut down afterwards when this call started it;
* every trial is a fit in its own run directory ``<out>/<sweep>/<chip>-<method>-<value>``;
* ``resume=True`` skips trials whose run directory holds a finished report of the same config
  (a changed option reruns the trial), and an unfinished one continues from its last completed
  stage (``fit --resume``);
* ``search="optuna"`` lets Optuna's multi-objective sampler (NSGA-II, via Ray Tune's
  ``OptunaSearch``) choose ``samples`` trials over chips x methods x values, maximising accuracy
  and minimising ``objective`` (synapses, cores or energy per sample);
* results: one row per trial (``sweep.json``), the Pareto-optimal trials per chip, and per
  chip a plot of accuracy against synapses and against energy per sample.

A trial's *accuracy* is that of the model the chip runs: the quantized model's test accuracy
(the pruned model's when quantization did not run); *synapses* are counted as the chip stores
them (after quantization). Energy per sample is the simulation's estimate from the profile's
figures (``energy.synop_pj``, ``energy.neuron_update_pj``); it is None with ``--backend none``
or for a chip without those figures.
"""
