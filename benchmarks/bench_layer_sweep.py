"""Batched torch layer sweep vs per-layer scikit-learn, on the same features, in one run.

Features: 30 layers x 3000 examples x 576 (SmolLM2-135M's shape), synthetic with a planted
direction whose strength grows with depth (x = noise + y * s_L * u_L). Both sides solve the
same problems: L2 logistic regression with class_weight="balanced" on standardised features,
C = 0.1, trained on the same 2250 rows and scored by AUROC on the same 750 held-out rows.

- "sweep": what ``probe.layer_sweep`` fits at every layer with its controls: the probe plus
  5 label-shuffle probes (6 problems per layer). Ours: one batched fit; peer: 6 x 30
  ``LogisticRegression`` fits.
- "main only": one probe per layer (reported for transparency).

Both sides run single-threaded (torch.set_num_threads(1), BLAS limited to 1 thread with
threadpoolctl) so that the shared, noisy machine affects them alike. The last line is
``ratio=<peer time / our time for the sweep>`` (> 1: ours faster).
Run: ``python benchmarks/bench_layer_sweep.py``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from probe.batched import fit_logistic_batched

L, N, D, C, N_SHUFFLES = 30, 3000, 576, 0.1, 5


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N)
    s = np.linspace(0.0, 1.5, L)
    U = rng.normal(size=(L, D))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    X = (rng.normal(size=(L, N, D)) + y[None, :, None] * s[:, None, None] * U[:, None, :]).astype(np.float32)
    train = np.zeros(N, bool)
    train[rng.permutation(N)[: int(0.75 * N)]] = True
    test = ~train
    Y = [y]
    for _ in range(N_SHUFFLES):
        ys = y.copy()
        ys[train] = y[train][rng.permutation(train.sum())]
        Y.append(ys)
    Y = np.stack(Y)
    W = np.tile(train.astype(np.float32), (len(Y), 1))

    with threadpool_limits(limits=1):
        rows = {}
        for name, P in (("main only", 1), ("sweep", len(Y))):
            t = time.perf_counter()
            fit = fit_logistic_batched(X, Y[:P], W[:P], C=C, device="cpu")
            ours_t = time.perf_counter() - t
            ours_auc = [roc_auc_score(y[test], X[l, test] @ fit.coef[l, 0, :, 0].numpy()) for l in range(L)]
            t = time.perf_counter()
            peer_auc = []
            for l in range(L):
                sc = StandardScaler().fit(X[l, train])
                Ztr, Zte = sc.transform(X[l, train]), sc.transform(X[l, test])
                for p in range(P):
                    m = LogisticRegression(C=C, class_weight="balanced", max_iter=1000).fit(Ztr, Y[p, train])
                    if p == 0:
                        peer_auc.append(roc_auc_score(y[test], m.decision_function(Zte)))
            peer_t = time.perf_counter() - t
            rows[name] = (P, ours_t, peer_t, np.array(ours_auc), np.array(peer_auc), fit.n_iter)

    print(f"features: {L} layers x {N} examples x {D}; C={C}; single-threaded; torch {torch.__version__}")
    print(f"{'layer':>5} {'AUROC ours':>11} {'AUROC sklearn':>14} {'|diff|':>8}")
    _, _, _, a, b, _ = rows["sweep"]
    for l in range(L):
        print(f"{l:>5} {a[l]:>11.4f} {b[l]:>14.4f} {abs(a[l] - b[l]):>8.5f}")
    print(f"max |AUROC diff| over layers: {np.abs(a - b).max():.5f} (requirement: <= 0.01)")
    for name, (P, ot, pt, *_rest, it) in rows.items():
        print(f"{name:>10}: {P} problem(s)/layer  ours {ot:7.2f} s ({it} L-BFGS iterations)  sklearn {pt:7.2f} s  "
              f"speed-up {pt / ot:5.1f}x")
    assert np.abs(a - b).max() <= 0.01, "AUROC differs by more than 0.01"
    print(f"ratio={rows['sweep'][2] / rows['sweep'][1]:.2f}")


if __name__ == "__main__":
    main()
