"""Custom Lava processes for neuroprune (imported only inside the Lava worker).

Lava's compiler imports every ``.py`` file in the directory of a custom process's module to
find its process models, so this package holds nothing else: ``process.py`` (the processes)
and ``models.py`` (their floating_pt / fixed_pt Python models). Never import torch here.
"""
