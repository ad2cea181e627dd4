"""Space batching's product, kept free of Lava so it can be tested without importing Lava.

The Lava process models in :mod:`neuroprune.sim.lavaext.models` call :func:`batched_dot`; Lava
itself is imported only inside the Lava worker (importing it sets the multiprocessing start
method for the whole interpreter).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SPARSE_INPUT_DENSITY = 0.25  # below this fraction of nonzero inputs, multiply sparse x sparse


def batched_dot(weights, spikes: np.ndarray, batch: int) -> np.ndarray:
    """``kron(I_batch, W) @ spikes`` without building the block matrix: ``(W S)^T`` flattened,
    with ``S = spikes.reshape(batch, n_in).T`` (sample-major in and out).

    When fewer than 25 % of the inputs are nonzero (spikes usually are), ``S`` is made a CSR
    matrix and the product costs one multiply-add per synaptic event instead of one per
    synapse. Either way each output sums its row's entries in ``W``'s column order, as
    ``W.dot`` does for one sample (zero terms skipped), so the result is the same number.
    """
    columns = spikes.reshape(batch, -1).T
    if np.count_nonzero(columns) < SPARSE_INPUT_DENSITY * columns.size:
        product = (weights @ sp.csr_matrix(columns)).toarray()
    else:
        product = weights @ np.ascontiguousarray(columns)
    return np.ascontiguousarray(product.T).ravel()
