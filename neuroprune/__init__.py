"""neuroprune: fit spiking neural networks onto neuromorphic chips.

Train and prune with SpikingJelly, quantize to the chip's weight format, export to NIR and
ONNX, verify on Lava, and report whether (and how) the network fits.
"""

__version__ = "0.1.0"
