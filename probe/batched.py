"""Batched torch trainer: one linear probe per (layer, problem), all fitted at once, CPU or GPU.

A *problem* is one fit on the shared features: the real labels on the training split, the
shuffled labels of the label-shuffle control (Hewitt & Liang 2019), one fold of held-out-template
cross-validation... Problems differ only by their labels and sample weights (weight 0 = not in
that problem's training set), so a whole sweep with its controls is one optimisation over
parameters of shape ``[n_layers, n_problems, d, k]``.

The objective per (layer, problem) is scikit-learn's L2 logistic regression with
``class_weight="balanced"`` on standardised features (Alain & Bengio 2016 linear probes)::

    C * sum_i w_i * loss(x_i) + 0.5 * ||v||^2        (v: weights on standardised features)

with the binary sigmoid loss for two classes and the multinomial (softmax) loss for more,
and an unpenalised intercept, so the optimum is the one ``LogisticRegression(C=C,
class_weight="balanced")`` reaches on ``StandardScaler`` features (tested). Standardisation
uses each problem's own training rows. The problems are independent, so the sum of their
objectives is minimised with full-batch L-BFGS (strong Wolfe line search); the features are
visited in row chunks, which is what lets the same code stream from a disk store
(:class:`probe.features.StoreFeatures`) with memory bounded by a chunk.

The same passes give the closed-form mean-difference direction (Nguyen et al. 2025: class-1
mean minus class-0 mean, per layer) and random-direction projections for the controls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .features import FeatureSource, as_features

__all__ = ["BatchedFit", "FitStats", "fit_stats", "fit_logistic_batched", "project", "ProbeFitError", "default_device"]


class ProbeFitError(ValueError):
    """Labels or weights that cannot define a probe (one class, no training rows...)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class FitStats:
    """Per (layer, problem) weighted statistics of the training rows.

    mean, std: ``[L, P, d]``; class_means: ``[L, P, K, d]``; weight_sum ``[P]`` (after class
    balancing), class_counts ``[P, K]``.
    """

    mean: torch.Tensor
    std: torch.Tensor
    class_means: torch.Tensor
    weight_sum: torch.Tensor
    class_counts: torch.Tensor


@dataclass
class BatchedFit:
    """Fitted probes: raw-space weights ``coef [L, P, d, k]`` and ``intercept [L, P, k]``
    (``k = 1`` for two classes: the logit of class 1; ``k = n_classes`` otherwise), so
    ``decision(x) = x @ coef + intercept`` on raw (unstandardised) activations."""

    coef: torch.Tensor
    intercept: torch.Tensor
    n_classes: int
    C: torch.Tensor
    n_iter: int
    converged: bool
    grad_max: float
    stats: FitStats

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """``[L, b, d]`` -> ``[L, P, b, k]``."""
        return torch.einsum("lbd,lpdk->lpbk", x, self.coef) + self.intercept[:, :, None, :]


def _prepare(y: Any, weights: Any, n: int, device: torch.device, n_classes: int | None
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if yt.ndim == 1:
        yt = yt.unsqueeze(0)
    if yt.shape[-1] != n:
        raise ProbeFitError(f"labels have {yt.shape[-1]} entries but the features have {n} examples")
    if weights is None:
        wt = torch.ones(yt.shape, dtype=torch.float32)
    else:
        wt = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
        if wt.ndim == 1:
            wt = wt.unsqueeze(0)
        if wt.shape[-1] != n:
            raise ProbeFitError(f"weights have {wt.shape[-1]} entries but the features have {n} examples")
    if yt.shape[0] != wt.shape[0]:
        if yt.shape[0] == 1:
            yt = yt.expand(wt.shape[0], n)
        elif wt.shape[0] == 1:
            wt = wt.expand(yt.shape[0], n)
        else:
            raise ProbeFitError(f"{yt.shape[0]} label rows but {wt.shape[0]} weight rows (one per problem)")
    if (yt < 0).any():
        raise ProbeFitError("labels must be class indices 0..K-1 (got negative values)")
    K = int(n_classes) if n_classes is not None else int(yt.max()) + 1
    K = max(K, 2)
    for p in range(yt.shape[0]):
        present = torch.unique(yt[p][wt[p] > 0])
        if present.numel() < 2:
            raise ProbeFitError(
                f"problem {p}: the training rows hold only class {present.tolist()}; a probe needs two classes "
                "in its training set (check the labels and the split)"
            )
    return yt.to(device), wt.to(device).contiguous(), K


def _balance(y: torch.Tensor, w: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's ``class_weight='balanced'``: w_i *= n_train / (K * n_train_class(y_i))."""
    onehot = torch.nn.functional.one_hot(y, K).float()  # [P, n, K]
    counts = torch.einsum("pn,pnk->pk", w, onehot)  # weighted class counts
    present = (counts > 0).sum(1, keepdim=True).float()
    total = counts.sum(1, keepdim=True)
    cw = torch.where(counts > 0, total / (present * counts.clamp(min=1e-12)), torch.zeros_like(counts))
    return w * torch.gather(cw, 1, y), counts


def fit_stats(features: FeatureSource, y: torch.Tensor, w: torch.Tensor, K: int, device: torch.device,
              chunk_rows: int = 4096) -> FitStats:
    """One pass: weighted means, standard deviations and class means per (layer, problem)."""
    L, d, P = features.n_layers, features.d, w.shape[0]
    s1 = torch.zeros(L, P, d, device=device, dtype=torch.float64)
    s2 = torch.zeros(L, P, d, device=device, dtype=torch.float64)
    sc = torch.zeros(L, P, K, d, device=device, dtype=torch.float64)
    for idx, x in features.chunks(device, chunk_rows):
        wc = w[:, idx]  # [P, b]
        oh = (torch.nn.functional.one_hot(y[:, idx], K).float() * (wc > 0).float()[..., None])  # [P, b, K]
        ohm = oh.permute(0, 2, 1).reshape(P * K, -1)  # [P*K, b]
        for layer in range(L):
            xl = x[layer]
            s1[layer] += (wc @ xl).double()
            s2[layer] += (wc @ (xl * xl)).double()
            sc[layer] += (ohm @ xl).view(P, K, d).double()
    if not bool(torch.isfinite(s2).all()):
        from .features import FeatureError

        bad = int((~torch.isfinite(s2)).nonzero()[0, 0])
        raise FeatureError(f"activations at layer index {bad} contain NaN or inf; fix the activations (a float16 "
                           "overflow?) before probing")
    W = w.sum(1).double()  # [P]
    mean = s1 / W[None, :, None]
    var = (s2 / W[None, :, None] - mean * mean).clamp(min=0)
    std = var.sqrt()
    std = torch.where(std < 1e-8, torch.ones_like(std), std)  # constant feature: leave unscaled
    counts = torch.einsum("pn,pnk->pk", (w > 0).float(), torch.nn.functional.one_hot(y, K).float()).double()
    cm = sc / counts.clamp(min=1)[None, :, :, None]
    return FitStats(mean.float(), std.float(), cm.float(), w.sum(1), counts.float())


def _auto_chunk(n_layers: int, d: int, device: torch.device) -> int:
    """Rows per chunk (in-memory features; a store streams shard by shard)."""
    if device.type != "cpu":
        return 65536
    return 8192


def _pdot(a: tuple, b: tuple) -> torch.Tensor:
    """Per-(layer, problem) inner product of parameter tuples (V [L,P,d,k], c [L,P,k])."""
    return (a[0] * b[0]).sum((2, 3)) + (a[1] * b[1]).sum(2)


def fit_logistic_batched(features: Any, y: Any, weights: Any = None, *, C: float | Sequence[float] = 1.0,
                         n_classes: int | None = None, max_iter: int = 300, tol: float = 1e-5, ftol: float = 1e-9,
                         device: Any = None, chunk_rows: int | None = None, class_weight: str | None = "balanced",
                         history_size: int = 10, stats: FitStats | None = None) -> BatchedFit:
    """Fit L2 logistic regression for every (layer, problem) at once.

    Batched L-BFGS with a separate history, step size and convergence test per (layer,
    problem), so each probe converges as if it were fitted alone (a shared line search over the
    concatenated problems converges at the pace of the worst-conditioned one). Gradients are
    computed in closed form, one pass over the features per evaluation; backtracking Armijo line
    search (the full step is accepted almost always, so an iteration is one pass).

    Args:
        features: ``[L, n, d]`` activations, an :class:`~probe.activations.Activations`, an
            :class:`~workbench.store.ActivationStore` or a :class:`~probe.features.FeatureSource`.
        y: class indices ``[n]`` or ``[P, n]`` (one row per problem).
        weights: ``[n]`` or ``[P, n]``; 0 excludes an example from that problem's training set.
        C: inverse regularisation strength, as in scikit-learn: a scalar, one per problem ``[P]``,
            or one per (layer, problem) ``[L, P]``.
        n_classes: number of classes (default: max label + 1).
        max_iter: L-BFGS iterations (each costs about one pass over the features).
        tol: a probe has converged when the largest entry of its gradient (objective divided by
            ``C * sum(weights)``, i.e. per training row) is below ``tol``...
        ftol: ...or when an iteration lowers its objective by less than ``ftol`` (relative), or
            its line search cannot lower it at all (the float32 noise floor).
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        chunk_rows: rows per chunk (default: cache-sized on CPU, large on GPU).
        class_weight: ``"balanced"`` (default) or ``None``.
    """
    feats = as_features(features)
    device = torch.device(device) if device is not None else default_device()
    yt, wt, K = _prepare(y, weights, feats.n, device, n_classes)
    P = yt.shape[0]
    if class_weight == "balanced":
        wt, _ = _balance(yt, wt, K)
    elif class_weight is not None:
        raise ProbeFitError(f"class_weight must be 'balanced' or None; got {class_weight!r}")
    Cn = np.asarray(C, dtype=np.float64)
    Cn = np.broadcast_to(Cn if Cn.ndim < 2 else Cn, (feats.n_layers, P) if Cn.ndim == 2 else (P,)).copy()
    if (Cn <= 0).any():
        raise ProbeFitError(f"C must be > 0; got {Cn.tolist()}")
    Ct = torch.as_tensor(Cn, dtype=torch.float64, device=device)
    if Ct.ndim == 1:
        Ct = Ct[None, :].expand(feats.n_layers, P)
    chunk = chunk_rows or _auto_chunk(feats.n_layers, feats.d, device)
    if stats is None:
        stats = fit_stats(feats, yt, wt, K, device, chunk)
    L, d = feats.n_layers, feats.d
    k = 1 if K == 2 else K
    Wsum = wt.sum(1).double()  # [P]
    wn = (wt / wt.sum(1, keepdim=True)).float()  # per-row weight, sums to 1 per problem
    lam = 1.0 / (Ct * Wsum[None, :])  # [L, P]: penalty 0.5 * lam * ||V||^2
    mu, sd = stats.mean, stats.std
    yf = yt.float()
    onehot = torch.nn.functional.one_hot(yt, K).float() if k > 1 else None

    def raw(V: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = (V / sd[..., None].double()).float()
        b = (c - torch.einsum("lpd,lpdk->lpk", mu.double(), V / sd[..., None].double())).float()
        return W, b

    # Row-major copies of the per-row quantities: chunks index rows, and [b, P] slices are contiguous.
    wnT = wn.T.contiguous()  # [n, P]
    signT = (2.0 * yf - 1.0).T.contiguous() if k == 1 else None  # [n, P]
    ohT = onehot.permute(1, 0, 2).contiguous() if k > 1 else None  # [n, P, K]

    sub_rows = 512 if device.type == "cpu" else None  # CPU: a sub-chunk stays in cache between forward and gradient

    def evaluate(V: torch.Tensor, c: torch.Tensor, lay: Sequence[int]) -> tuple[torch.Tensor, tuple]:
        """Objective and gradient for the layers ``lay`` (rows of the outputs for other layers are 0)."""
        W, b = raw(V, c)
        Wm = W.permute(0, 2, 1, 3).reshape(L, d, P * k).contiguous()
        bm = b.reshape(L, P * k)
        f = torch.zeros(L, P, device=device)
        gW = torch.zeros(L, d, P * k, device=device)
        gb = torch.zeros(L, P * k, device=device)
        for idx, x in feats.chunks(device, chunk):
            nb = x.shape[1]
            step = sub_rows or nb
            for a0 in range(0, nb, step):
                rows = idx[a0:a0 + step]
                wc = wnT[rows]  # [b, P]
                s = signT[rows] if k == 1 else None
                oh = ohT[rows] if k > 1 else None
                for layer in lay:
                    xs = x[layer, a0:a0 + step]
                    z = torch.addmm(bm[layer], xs, Wm[layer])  # [b, P*k]
                    if k == 1:
                        mz = z * s
                        loss = torch.nn.functional.softplus(-mz)
                        r = torch.sigmoid(-mz).mul_(s).mul_(wc).neg_()
                    else:
                        zz = z.view(-1, P, k)
                        loss = torch.logsumexp(zz, -1) - (zz * oh).sum(-1)
                        r = ((torch.softmax(zz, -1) - oh) * wc[..., None]).reshape(-1, P * k)
                    f[layer] += (loss * wc).sum(0)
                    gW[layer].addmm_(xs.T, r)
                    gb[layer] += r.sum(0)
        gW = gW.double().view(L, d, P, k).permute(0, 2, 1, 3)
        gb = gb.double().view(L, P, k)
        gV = (gW - mu.double()[..., None] * gb[:, :, None, :]) / sd.double()[..., None] + lam[..., None, None] * V
        f = f.double() + 0.5 * lam * (V * V).sum((2, 3))
        return f, (gV, gb)

    m = d * k + k
    theta = torch.zeros(L, P, m, device=device, dtype=torch.float64)

    def split(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return th[..., :d * k].reshape(L, P, d, k), th[..., d * k:]

    all_layers = list(range(L))

    def fg(th: torch.Tensor, lay: Sequence[int] = all_layers) -> tuple[torch.Tensor, torch.Tensor]:
        f, (gV, gc) = evaluate(*split(th), lay)
        return f, torch.cat([gV.reshape(L, P, d * k), gc], -1)

    f, g = fg(theta)
    active = g.abs().amax(-1) > tol
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    R: list[torch.Tensor] = []
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        q = g.clone()
        alphas = []
        for s, yv, rho in zip(reversed(S), reversed(Y), reversed(R)):
            a = rho * (s * q).sum(-1)
            q -= a[..., None] * yv
            alphas.append(a)
        if S:
            yy = (Y[-1] * Y[-1]).sum(-1)
            gamma = torch.where((R[-1] > 0) & (yy > 0), 1.0 / (R[-1] * yy).clamp(min=1e-300), torch.ones_like(yy))
        else:
            gamma = 1.0 / g.norm(dim=-1).clamp(min=1.0)
        r = gamma[..., None] * q
        for s, yv, rho, a in zip(S, Y, R, reversed(alphas)):
            r += (a - rho * (yv * r).sum(-1))[..., None] * s
        direction = -r
        gd = (g * direction).sum(-1)
        bad = gd >= 0  # not a descent direction: steepest descent for that probe
        if bool(bad.any()):
            direction = torch.where(bad[..., None], -g, direction)
            gd = (g * direction).sum(-1)
        direction = direction.masked_fill(~active[..., None], 0.0)
        t = torch.ones(L, P, device=device, dtype=torch.float64)
        th_new = theta + direction
        fn, gn = fg(th_new)
        for _ in range(30):
            ok = (fn <= f + 1e-4 * t * gd) | ~active
            if bool(ok.all()):
                break
            t = torch.where(ok, t, 0.5 * t)
            th_new = theta + t[..., None] * direction
            redo = torch.nonzero(~ok.all(1)).flatten().tolist()  # only layers with a failing probe
            f2, g2 = fg(th_new, redo)
            fn[redo], gn[redo] = f2[redo], g2[redo]
        # Problems whose line search failed are at the float32 noise floor: keep their old point.
        stuck = ~ok
        if bool(stuck.any()):
            th_new = torch.where(stuck[..., None], theta, th_new)
            fn = torch.where(stuck, f, fn)
            gn = torch.where(stuck[..., None], g, gn)
        s, yv = th_new - theta, gn - g
        sy = (s * yv).sum(-1)
        S.append(s)
        Y.append(yv)
        R.append(torch.where(sy > 1e-12, 1.0 / sy.clamp(min=1e-300), torch.zeros_like(sy)))
        if len(S) > history_size:
            S.pop(0), Y.pop(0), R.pop(0)
        small_change = (f - fn) <= ftol * torch.maximum(f.abs(), torch.ones_like(f))
        theta, f, g = th_new, fn, gn
        active = active & ~stuck & ~small_change & (g.abs().amax(-1) > tol)
        if not bool(active.any()):
            break
    gm = float(g.abs().amax(-1).max())
    W, b = raw(*split(theta))
    return BatchedFit(W, b, K, Ct.float(), n_iter, gm <= max(100 * tol, 1e-4), gm, stats)


def project(features: Any, *, fit: BatchedFit | None = None, directions: torch.Tensor | None = None,
            shared_directions: torch.Tensor | None = None, device: Any = None, chunk_rows: int = 4096,
            rows: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """One pass computing, for every example (or only ``rows``, a boolean mask):

    - ``"logit"``: ``fit.decision`` -> ``[L, P, n, k]``
    - ``"dir"``: projections on per-(layer, problem) ``directions [L, P, d]`` -> ``[L, P, n]``
    - ``"shared"``: projections on ``shared_directions [Q, d]`` (same at every layer) -> ``[L, Q, n]``

    Outputs are on the CPU, ordered by example index (restricted to ``rows`` when given).
    """
    feats = as_features(features)
    device = torch.device(device) if device is not None else default_device()
    n = feats.n
    keep = None if rows is None else torch.as_tensor(np.asarray(rows, bool))
    pos = None
    if keep is not None:
        pos = torch.full((n,), -1, dtype=torch.long)
        pos[keep] = torch.arange(int(keep.sum()))
        n_out = int(keep.sum())
    else:
        n_out = n
    out: dict[str, torch.Tensor] = {}
    if fit is not None:
        out["logit"] = torch.zeros(feats.n_layers, fit.coef.shape[1], n_out, fit.coef.shape[3])
    if directions is not None:
        directions = directions.to(device)
        out["dir"] = torch.zeros(feats.n_layers, directions.shape[1], n_out)
    if shared_directions is not None:
        shared_directions = shared_directions.to(device, torch.float32)
        out["shared"] = torch.zeros(feats.n_layers, shared_directions.shape[0], n_out)
    with torch.no_grad():
        for idx, x in feats.chunks(device, chunk_rows):
            idx_cpu = idx.cpu()
            if pos is not None:
                sel = keep[idx_cpu]
                if not sel.any():
                    continue
                x = x[:, sel.to(x.device)]
                dst = pos[idx_cpu[sel]]
            else:
                dst = idx_cpu
            if fit is not None:
                out["logit"][:, :, dst] = fit.decision(x).cpu()
            if directions is not None:
                out["dir"][:, :, dst] = torch.einsum("lbd,lpd->lpb", x, directions).cpu()
            if shared_directions is not None:
                out["shared"][:, :, dst] = torch.einsum("lbd,qd->lqb", x, shared_directions).cpu()
    return out
