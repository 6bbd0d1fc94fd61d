"""Batched torch layer sweep vs per-layer scikit-learn, on the same features, in one run.

Features: 30 layers x 3000 examples x 576 (SmolLM2-135M's shape), synthetic with a planted
direction whose strength grows with depth (x = noise + y * s_L * u_L). Both sides solve the
same problems: L2 logistic regression with class_weight="balanced" on standardised features,
C = 0.1, trained on the same 2250 rows and scored by AUROC on the same 750 held-out rows.

- "main only": one probe per layer.
- "sweep": what ``probe.layer_sweep(..., C=0.1)`` fits at every layer on these features (no
  templates): the probe plus 5 label-shuffle probes (6 problems per layer). Ours: one batched
  fit; peer: 6 x 30 ``LogisticRegression`` fits. This is the acceptance configuration: its
  speed-up is the last line, ``ratio=<sklearn time / our time>`` (> 1: ours faster).
- "sweep + templates": the same with 5 held-out-template folds (11 problems per layer), what
  layer_sweep fits when the examples have templates.

Both sides get the same number of threads (``--threads``, default 1: torch.set_num_threads for
ours, BLAS limited with threadpoolctl for scikit-learn's), and they alternate, so load changes on
a shared machine hit both. Single-threaded is scikit-learn's best case on these small per-layer
problems: with 2 BLAS threads its fits ran about 10x slower on a 2-core machine (and the ratio
rose to 37x), which says more about BLAS threading than about the trainer, so the acceptance
number is the single-threaded one. Timed: ours = ``fit_logistic_batched`` (statistics pass + L-BFGS);
sklearn = ``StandardScaler`` + ``LogisticRegression.fit`` (+ ``decision_function`` of the main
probe). Also printed: L-BFGS iterations (one pass over the features each: two batched matmuls),
the arithmetic per pass and the rate it ran at, and scikit-learn's mean iteration count.
Run: ``python benchmarks/bench_layer_sweep.py [--threads N]``.
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

L, N, D, C, N_SHUFFLES, N_FOLDS = 30, 3000, 576, 0.1, 5, 5


def problems(rng, y, train, with_templates):
    Y, Wt = [y], [train.astype(np.float32)]
    for _ in range(N_SHUFFLES):
        ys = y.copy()
        ys[train] = y[train][rng.permutation(train.sum())]
        Y.append(ys)
        Wt.append(train.astype(np.float32))
    if with_templates:
        fold = rng.integers(0, N_FOLDS, N)  # template fold of each example
        for f in range(N_FOLDS):
            Y.append(y)
            Wt.append((fold != f).astype(np.float32))
    return np.stack(Y), np.stack(Wt)


def run_ours(X, Y, Wt):
    t = time.perf_counter()
    fit = fit_logistic_batched(X, Y, Wt, C=C, device="cpu")
    return time.perf_counter() - t, fit


def run_sklearn(X, Y, Wt, test):
    t = time.perf_counter()
    aucs, iters = [], []
    for layer in range(L):
        scalers = {}
        for p in range(len(Y)):
            rows = Wt[p] > 0
            key = rows.tobytes()
            if key not in scalers:
                scalers[key] = StandardScaler().fit(X[layer, rows])
            sc = scalers[key]
            m = LogisticRegression(C=C, class_weight="balanced", max_iter=1000).fit(sc.transform(X[layer, rows]),
                                                                                   Y[p, rows])
            iters.append(int(m.n_iter_[0]))
            if p == 0:
                aucs.append(roc_auc_score(Y[0, test], m.decision_function(sc.transform(X[layer, test]))))
    return time.perf_counter() - t, np.array(aucs), float(np.mean(iters))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for both sides (default 1)")
    threads = ap.parse_args().threads
    torch.set_num_threads(threads)
    print(f"threads per side: {threads}")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N)
    s = np.linspace(0.0, 1.5, L)
    U = rng.normal(size=(L, D))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    X = (rng.normal(size=(L, N, D)) + y[None, :, None] * s[:, None, None] * U[:, None, :]).astype(np.float32)
    Xt = torch.from_numpy(X)
    train = np.zeros(N, bool)
    train[rng.permutation(N)[: int(0.75 * N)]] = True
    test = ~train
    configs = {"main only": problems(np.random.default_rng(1), y, train, False),
               "sweep": problems(np.random.default_rng(1), y, train, False),
               "sweep + templates": problems(np.random.default_rng(1), y, train, True)}
    configs["main only"] = (configs["main only"][0][:1], configs["main only"][1][:1])

    rows = {}
    with threadpool_limits(limits=threads):
        fit_logistic_batched(Xt[:, :200], y[:200], C=C, device="cpu")  # warm-up (first-call overheads)
        for name, (Y, Wt) in configs.items():
            ours_t, fit = run_ours(Xt, Y, Wt)
            peer_t, peer_auc, peer_iter = run_sklearn(X, Y, Wt, test)
            ours_auc = np.array([roc_auc_score(y[test], X[layer, test] @ fit.coef[layer, 0, :, 0].numpy())
                                 for layer in range(L)])
            n_used = int((Wt > 0).any(0).sum())
            gflop = 2 * 2 * L * n_used * D * Y.shape[0] / 1e9  # forward + backward matmul per pass
            rows[name] = dict(P=Y.shape[0], ours=ours_t, peer=peer_t, auc=ours_auc, peer_auc=peer_auc,
                              it=fit.n_iter, conv=fit.converged, gflop=gflop, peer_iter=peer_iter)

    print(f"features: {L} layers x {N} examples x {D}; C={C}; single-threaded; torch {torch.__version__}")
    r = rows["sweep"]
    print(f"{'layer':>5} {'AUROC ours':>11} {'AUROC sklearn':>14} {'|diff|':>8}")
    for layer in range(L):
        print(f"{layer:>5} {r['auc'][layer]:>11.4f} {r['peer_auc'][layer]:>14.4f} "
              f"{abs(r['auc'][layer] - r['peer_auc'][layer]):>8.5f}")
    for name, r in rows.items():
        d = np.abs(r["auc"] - r["peer_auc"]).max()
        print(f"{name:>17}: {r['P']:>2} problems/layer  ours {r['ours']:6.2f} s ({r['it']} iterations, "
              f"converged={r['conv']}, {r['gflop']:.2f} GFLOP/pass, {r['gflop'] * (r['it'] + 1) / r['ours']:.0f} "
              f"GFLOP/s)  sklearn {r['peer']:6.2f} s (mean {r['peer_iter']:.1f} iterations)  speed-up "
              f"{r['peer'] / r['ours']:4.1f}x  max |AUROC diff| {d:.5f}")
        assert d <= 0.01, f"{name}: AUROC differs by more than 0.01"
    print("max |AUROC diff| over layers (sweep): "
          f"{np.abs(rows['sweep']['auc'] - rows['sweep']['peer_auc']).max():.5f} (requirement: <= 0.01)")
    print(f"ratio={rows['sweep']['peer'] / rows['sweep']['ours']:.2f}")


if __name__ == "__main__":
    main()
