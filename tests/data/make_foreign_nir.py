"""Make ``tests/data/foreign/*.nir``: small networks trained and exported by other SNN tools.

Run from the repository root, each tool where its exporter works: snnTorch 1.0's exporter
needs nir >= 1.0.8 (it writes ``v_reset``); Norse 1.1's and Sinabs 3.1's need nir 1.0.4 (on
1.0.8 Norse's graph fails to write: "Scalar datasets don't support chunk/filter options"), so
they run in the sinabs test environment (``neuroprune backends install sinabs``; its folder is
listed by ``neuroprune backends``), which sees Norse from the tool's environment::

    PYTHONPATH=. python tests/data/make_foreign_nir.py snntorch            # tool's nir 1.0.8
    <envs>/sinabs/bin/python tests/data/make_foreign_nir.py norse sinabs   # nir 1.0.4

(The stored files were made with the torch of their day: a run today trains other weights.)

Each tool trains a 64-32-10 network on scikit-learn's 8x8 digits (direct input, T = 8 steps,
cross-entropy on the output spike counts, surrogate gradients of the tool, 4 epochs, seed 0)
and writes it with its own exporter:

* ``snntorch_mlp.nir``: ``nn.Linear`` + ``snn.Leaky(beta=0.5, reset_mechanism="zero")``,
  ``snntorch.export_to_nir`` (LIF with tau = 1e-4/(1-beta), r = tau/1e-4: snnTorch's dt 1e-4 s).
* ``norse_mlp.nir``: ``nn.Linear`` + ``LIFBoxCell(tau_mem_inv=500, v_th=1)``,
  ``norse.torch.to_nir`` (dt 1e-3 s).
* ``sinabs_mlp.nir``: ``nn.Linear`` + ``IAFSqueeze``, ``sinabs.to_nir`` (IF with r = 1: one
  step per unit time, dt = 1).

The figures printed are each tool's own test accuracy; the tests only need the files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = Path(__file__).with_name("foreign")
T, HIDDEN, EPOCHS = 8, 32, 4


def digits():
    data = load_digits()
    x = (data.images / 16.0).reshape(-1, 64).astype(np.float32)
    split = train_test_split(x, data.target, test_size=0.2, random_state=0, stratify=data.target)
    return [torch.from_numpy(np.asarray(a)) for a in split]


def train(net, counts, params) -> float:
    """Train ``net`` (``counts(x [B, 64]) -> [B, 10]``) and return its test accuracy."""
    x_tr, x_te, y_tr, y_te = digits()
    opt = torch.optim.Adam(params, lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x_tr), generator=gen).split(64):
            loss = torch.nn.functional.cross_entropy(counts(x_tr[idx]), y_tr[idx].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((counts(x_te).argmax(1) == y_te).float().mean())


def snntorch_mlp() -> nir.NIRGraph:
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(64, HIDDEN), torch.nn.Linear(HIDDEN, 10)
    lif1 = snn.Leaky(beta=0.5, reset_mechanism="zero", init_hidden=False)
    lif2 = snn.Leaky(beta=0.5, reset_mechanism="zero", init_hidden=False)

    def counts(x):
        m1, m2, total = lif1.init_leaky(), lif2.init_leaky(), 0
        for _ in range(T):
            s1, m1 = lif1(fc1(x), m1)
            s2, m2 = lif2(fc2(s1), m2)
            total = total + s2
        return total

    params = [*fc1.parameters(), *fc2.parameters()]
    print("snntorch accuracy", train(None, counts, params))
    # The form its exporter walks: init_hidden, and per-neuron beta/threshold (with scalars its
    # own type inference fails), the same values as in training.
    hidden = [
        snn.Leaky(
            beta=torch.full((n,), 0.5),
            threshold=torch.ones(n),
            reset_mechanism="zero",
            init_hidden=True,
        )
        for n in (HIDDEN, 10)
    ]
    net = torch.nn.Sequential(fc1, hidden[0], fc2, hidden[1])
    return export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])


def norse_mlp() -> nir.NIRGraph:
    import norse.torch as norse

    torch.manual_seed(0)
    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(1.0))
    net = norse.SequentialState(
        torch.nn.Linear(64, HIDDEN),
        norse.LIFBoxCell(p),
        torch.nn.Linear(HIDDEN, 10),
        norse.LIFBoxCell(p),
    )

    def counts(x):
        state, total = None, 0
        for _ in range(T):
            out, state = net(x, state)
            total = total + out
        return total

    print("norse accuracy", train(net, counts, list(net.parameters())))
    return norse.to_nir(net, torch.zeros(1, 64))


def sinabs_mlp() -> nir.NIRGraph:
    import sinabs
    import sinabs.layers as sl

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN),
        sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0),
        torch.nn.Linear(HIDDEN, 10),
        sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0),
    )

    def counts(x):
        sinabs.reset_states(net)
        for m in net:
            if isinstance(m, sl.IAFSqueeze):
                m.batch_size = x.shape[0]
        out = net(x.unsqueeze(1).expand(-1, T, -1).reshape(-1, 64))
        return out.reshape(x.shape[0], T, -1).sum(1)

    print("sinabs accuracy", train(net, counts, list(net.parameters())))
    sinabs.reset_states(net)
    for m in net:
        if isinstance(m, sl.IAFSqueeze):
            m.batch_size = 1
    return sinabs.to_nir(net, torch.zeros(1, 64))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    makers = {"snntorch": snntorch_mlp, "norse": norse_mlp, "sinabs": sinabs_mlp}
    for name in sys.argv[1:] or makers:
        graph = makers[name]()
        path = OUT / f"{name}_mlp.nir"
        nir.write(path, graph)
        print("wrote", path, sorted(graph.nodes), graph.edges)


if __name__ == "__main__":
    main()
