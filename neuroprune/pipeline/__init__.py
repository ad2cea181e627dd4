"""The fit pipeline (layer L8): configuration, the stages, and commands on a saved run.

Modules: :mod:`.config` (the validated run configuration), :mod:`.preflight` (everything
checked before training), :mod:`.run` (``run_fit``: a loop over
:data:`.stages.STAGES`), :mod:`.stages` (one module per stage: dense, prune, quantize, fit,
export, simulate, report, each filling its typed section of the run record), :mod:`.resume`
(each stage's inputs), :mod:`.prune_loop` and :mod:`.structured`
(the pruning recipes: train, evaluate, fit check), :mod:`.commands` (quantize, export,
simulate and report on a saved run), :mod:`.check` (the dense network's verdict).

``run_fit(cfg)``: profile -> data -> model -> budget (checked before training) -> dense training
-> pruning to the budget -> quantization -> fit check -> NIR/ONNX export -> simulation of the
exported file -> report. Every artifact is written atomically; ``--resume`` reuses the
artifacts of completed stages (dense training also resumes per epoch).

Run directory (docs/architecture.md): config.yaml, profile.yaml, dense.pt, pruned.pt, quantized.pt,
model.nir, model.onnx, fit.json, simulation.json, report.json, report.md, plots/*.png, log.txt.
"""
