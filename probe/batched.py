"""Batched torch trainer: one linear probe per (layer, problem), all fitted at once, CPU or GPU.

A *problem* is one fit on the shared features: the real labels on the training split, the
shuffled labels of the label-shuffle control (Hewitt & Liang 2019), one fold of held-out-template
cross-validation... Problems differ only by their labels and sample weights (weight 0 = not in
that problem's training set), so a whole sweep with its controls is one optimisation over
parameters of shape ``[n_layers, n_problems, k, d]``.

Objective (per layer and problem): scikit-learn's L2 logistic regression with
``class_weight="balanced"`` on ``StandardScaler`` features (Alain & Bengio 2016 linear probes)::

    C * sum_i w_i * loss(x_i) + 0.5 * ||v||^2        (v: weights on standardised features)

with the binary sigmoid loss for two classes and the multinomial (softmax) loss for more, an
unpenalised intercept, balanced weights ``w_i = n / (K * n_class(y_i))`` over the problem's
training rows, and standardisation by the *unweighted* mean and population standard deviation
of those rows (as ``StandardScaler().fit(X_train)``). So the optimum is the one
``LogisticRegression(C=C, class_weight="balanced")`` reaches on ``StandardScaler`` features
(tested to 5e-3 in the weights). Internally the objective is divided by ``C * sum(w)`` (the
per-row scale scikit-learn's lbfgs solver uses), so ``tol`` means the same as its ``tol``.

Two solvers minimise this objective (``backend=``; both tested against each other and scikit-learn):

- **Native** (default for two classes on in-memory features on the CPU; :mod:`probe._native`,
  compiled with numba): layer by layer, the layer's used rows are gathered and centred into one
  buffer and the whole L-BFGS loop of that layer (all of its problems in lockstep) runs in
  compiled code while the buffer is in cache, with kernels for this shape (logits on a 2-row x
  6-problem register tile, the weight gradient over 8-row blocks, vectorised exp/log1p). Layers
  run on ``torch.get_num_threads()`` threads (on a 2-core VM: 0.12-0.14 s with 2 against
  0.18 s with 1 for the fit below). Same line search and stopping rules as below, but
  each problem keeps its own history. On one core for 30 layers x 2250 rows x 576 with 6
  problems it took 0.18 s where the batched passes took 0.42-0.55 s (``bench_layer_sweep.py``):
  a batched pass streams all 155 MB of rows from memory every iteration, while scikit-learn
  (and this solver) keep one layer's 5 MB in the last-level cache.
- **Batched passes** (everything else: GPUs, streamed stores, more than two classes), below.

Algorithm of the batched passes (one pass over the features per iteration, no Python loop over
layers or problems):

- **One pass = two products.** With features ``X [L, n, d]`` and raw-space weights
  ``W [L, P*k, d]`` (standardisation folded in: ``W = V / sd``, ``b = c - mean . W``), a chunk
  of rows gives the logits of every (layer, problem) as ``X_c W^T + b`` and the gradient as
  ``R_c^T X_c`` with the weighted residuals ``R_c``. The output is narrow (``P*k`` columns), a
  shape where MKL's batched GEMM is slow on CPU, so on CPU in-memory features (up to 1 GiB of
  used rows) are copied once into oneDNN's layout and every pass runs oneDNN's inner product and
  its weight gradient, per layer (the ``nn.Linear`` forward and weight-gradient kernels), skipping
  layers whose problems have all finished. That copy is centred on each layer's mean, which
  keeps float32 logits accurate on model activations (dimensions with means far above their
  spread; on raw rows ``x.w`` and ``b`` cancel and fits stall above ``tol``). Streamed features
  use oneDNN's inner product for the logits and a batched GEMM for the gradient, and CUDA uses
  batched GEMMs; a copy the trainer owns (gathered rows, features moved to the GPU) is centred
  likewise, while rows read in place (streamed shards, a fully used tensor already on the
  device) are not (centre such activations first if they have huge means). On one core, for 30 layers x 2250 rows x 576 and 6
  problems, a pass went from ~45 ms (two batched GEMMs) to ~22 ms; with 15 problems from ~90 ms
  to ~27 ms. Work buffers (logits, residuals) are allocated once per fit.
- **Batched L-BFGS** (Nocedal & Wright 2006, alg. 7.4) with a history, a curvature scale and a
  convergence test per (layer, problem); converged problems are masked (their step is zero),
  never split out, so every tensor keeps its batched shape.
- **Batched line search from stored logits.** The pass stores the logits ``Z`` of the trial
  point ``theta + t * p``. Along a search direction the logits are linear in the step,
  ``Z(t) = Z_0 + t (Z_1 - Z_0)``, so the objective at *any* step is known without touching
  the features again. Each problem checks the Armijo condition at its trial step; the rare
  problem that fails gets the minimiser of its objective along the segment (safeguarded
  Newton on the exact 1-D function, all failing problems at once) as its next trial step,
  evaluated in the same pass as every other problem's next iterate. No pass is ever spent on
  a line search. A problem whose exact 1-D minimum does not lower the objective, or whose
  retry at that minimum fails Armijo on the recomputed logits (in exact arithmetic it cannot),
  is at the float32 noise floor and stops.
- The first pass (statistics) also yields the gradient at zero, so iteration 1 needs no
  extra pass; its initial inverse-Hessian scale is the diagonal Newton step on standardised
  features (Hessian ~ sigma'(0) + lambda), and later ones use ``s.y / y.y``.

Rows that no problem trains on (the test split) are skipped. In-memory features are gathered
once to those rows; a store streams shard by shard (:class:`probe.features.StoreFeatures`),
so the trainer's memory is a shard plus ``O(n_layers * n_problems * n_rows)`` logits.

The statistics pass also gives the closed-form mean-difference direction (Nguyen et al.
2025: class-1 mean minus class-0 mean, per layer) and random-direction projections use
:func:`project`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ._linesearch import _segment_minimum
from ._problems import FitStats, ProbeFitError, _balance, _prepare, _stats_pass, fit_stats
from ._rows import _auto_chunk, _dense, _logits, _Rows
from ._rows import _onednn_pass_ok as _onednn_pass_ok  # whether the oneDNN passes run here (tests ask)
from .features import FeatureSource, TensorFeatures, as_features

__all__ = ["BatchedFit", "FitStats", "fit_stats", "fit_logistic_batched", "project", "ProbeFitError", "default_device"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class BatchedFit:
    """Fitted probes: raw-space weights ``coef [L, P, d, k]`` and ``intercept [L, P, k]``
    (``k = 1`` for two classes: the logit of class 1; ``k = n_classes`` otherwise), so
    ``decision(x) = x @ coef + intercept`` on raw (unstandardised) activations.

    ``n_iter``: iterations = passes over the features after the statistics pass;
    ``grad_max``: the largest per-row-scaled gradient entry over all problems at the end;
    ``converged``: every problem reached ``tol``, or stopped at the float32 noise floor (no
    representable progress) with a gradient of at most ``max(tol, 1e-4)``;
    ``problem_converged [L, P]`` says which.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    n_classes: int
    C: torch.Tensor
    n_iter: int
    converged: bool
    grad_max: float
    stats: FitStats
    problem_converged: torch.Tensor | None = None

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """``[L, b, d]`` -> ``[L, P, b, k]``."""
        return torch.einsum("lbd,lpdk->lpbk", x, self.coef) + self.intercept[:, :, None, :]


# ----------------------------------------------------------------------------- the trainer
def fit_logistic_batched(features: Any, y: Any, weights: Any = None, *, C: float | Sequence[float] = 1.0,
                         n_classes: int | None = None, max_iter: int = 300, tol: float = 1e-4,
                         device: Any = None, chunk_rows: int | None = None, class_weight: str | None = "balanced",
                         history_size: int = 10, ftol: float = 1e-9, backend: str = "auto") -> BatchedFit:
    """Fit L2 logistic regression for every (layer, problem) at once (see the module docstring).

    Args:
        features: ``[L, n, d]`` activations, an :class:`~probe.activations.Activations`, an
            :class:`~workbench.store.ActivationStore` or a :class:`~probe.features.FeatureSource`.
        y: class indices ``[n]`` or ``[P, n]`` (one row per problem).
        weights: ``[n]`` or ``[P, n]``; 0 excludes an example from that problem's training set.
        C: inverse regularisation strength, as in scikit-learn: a scalar, one per problem ``[P]``,
            or one per (layer, problem) ``[L, P]``.
        n_classes: number of classes (default: max label + 1).
        max_iter: L-BFGS iterations (one pass over the training rows each).
        tol: a problem has converged when the largest entry of its gradient (objective divided by
            ``C * sum(weights)``, i.e. per training row, as scikit-learn's lbfgs) is ``<= tol``
            (scikit-learn's default is 1e-4).
        ftol: also stop a problem when an accepted iteration lowers its objective by at most
            ``ftol * max(|f|, 1)``: the objective of float32 logits is resolved to about 1e-9, so
            below that the steps are noise (the float32 floor; the gradient there is typically
            1e-6..1e-5). A problem stopped at the floor counts as converged when its gradient is
            at most ``max(tol, 1e-4)``.
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        chunk_rows: rows per chunk of in-memory features (default: as many as fit ~0.5 GB per chunk).
        class_weight: ``"balanced"`` (default) or ``None``.
        history_size: L-BFGS memory (pairs).
        backend: ``"auto"`` (default): the compiled per-layer solver (:mod:`probe._native`) for
            two classes on in-memory features on the CPU, the batched passes otherwise;
            ``"native"``: that solver, or an error saying why it cannot run; ``"torch"``: the
            batched passes (any device, features, number of classes).
    """
    feats = as_features(features)
    device = torch.device(device) if device is not None else default_device()
    yt, wt, K = _prepare(y, weights, feats.n, device, n_classes)
    P, L, d = yt.shape[0], feats.n_layers, feats.d
    if class_weight == "balanced":
        wb, _ = _balance(yt, wt, K)
    elif class_weight is None:
        wb = wt
    else:
        raise ProbeFitError(f"class_weight must be 'balanced' or None; got {class_weight!r}")
    Cn = np.asarray(C, dtype=np.float64)
    try:
        if Cn.ndim > 2 or (Cn.ndim == 2 and Cn.shape != (L, P)):
            raise ValueError
        Cn = np.broadcast_to(Cn[None] if Cn.ndim < 2 else Cn, (L, P)).copy()
    except ValueError:
        raise ProbeFitError(f"C has shape {Cn.shape}; use a scalar, one per problem ({P}) or one per "
                            f"(layer, problem) {(L, P)}") from None
    if not (Cn > 0).all():
        raise ProbeFitError(f"C must be > 0; got {np.unique(Cn).tolist()}")
    Ct = torch.as_tensor(Cn, dtype=torch.float64, device=device)
    k = 1 if K == 2 else K
    Pk = P * k
    native = _use_native(backend, device, feats, K)
    rows = _Rows(feats, (wt > 0).any(0), device, chunk_rows or _auto_chunk(device, feats), native=native)
    nu = rows.n_used
    Wsum = wb.sum(1).double()  # [P]
    # per-row quantities of the used rows, row-major ([nu, P*k]) like the logits
    wn = (wb / wb.sum(1, keepdim=True))[:, rows.used].T.contiguous()  # [nu, P], sums to 1 per problem
    wn64 = wn.double()
    lam = 1.0 / (Ct * Wsum[None, :])  # [L, P]: penalty 0.5 * lam * ||V||^2 on the per-row scale
    yu = yt[:, rows.used].T  # [nu, P]
    if k == 1:
        sgn = (2.0 * yu - 1.0).float().contiguous()  # [nu, P]
        r0 = -0.5 * sgn * wn  # residual at z = 0, [nu, P]
        oh = None
        h0 = 0.25
    else:
        oh = torch.nn.functional.one_hot(yu, K).float().reshape(nu, Pk)  # [nu, P*K]
        wk = wn.repeat_interleave(K, dim=1)  # [nu, P*K]
        r0 = (1.0 / K - oh) * wk
        sgn = None
        h0 = (1.0 / K) * (1.0 - 1.0 / K)
    if native:
        r0_full = None  # the solver computes the gradient at zero itself
    else:
        r0_full = torch.zeros(feats.n, Pk, device=device)
        r0_full[rows.used] = r0
    stats, G0 = _stats_pass(feats, yt, wt, K, device, rows, extra=r0_full)
    if rows.x is not None and rows.owned:  # centre our copy too (the oneDNN copy already is)
        rows.shift = rows.stats_shift.to(device)
        rows.x.sub_(rows.shift.to(rows.x.dtype))
    mu = stats.mean.double()[:, :, None, :]  # [L, P, 1, d]
    sd = stats.std.double()[:, :, None, :]
    m = k * d + k

    def split(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return th[..., :k * d].view(*th.shape[:-1], k, d), th[..., k * d:]

    def raw(th: torch.Tensor, shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights and bias on raw rows, or on rows minus ``shift [L, 1, d]`` (bias computed in
        float64 from the mean's offset to the shift, so it does not cancel)."""
        V, c = split(th)
        W = V / sd
        b = c - (W * (mu if shift is None else mu - shift[:, None])).sum(-1)
        return W.reshape(L, Pk, d).float().contiguous(), b.reshape(L, 1, Pk).float()

    if native:
        theta, n_iter, status = _solve_native(rows, sgn, wn, mu, sd, lam, tol, ftol, max_iter, history_size)
        gmax = torch.from_numpy(status[..., 0])
        floor = torch.from_numpy(status[..., 1] > 0)
        prob_conv = (gmax <= tol) | (floor & (gmax <= max(tol, 1e-4)))
        W, b = raw(theta)
        coef = W.view(L, P, k, d).permute(0, 1, 3, 2).contiguous()
        return BatchedFit(coef, b.view(L, P, k), K, Ct.float(), n_iter, bool(prob_conv.all()), float(gmax.max()),
                          stats, prob_conv)

    # Work buffers, allocated once per fit: logits double-buffered (accepted / trial), residuals,
    # and the loss's chunk temporaries. Fresh tensors of this size every pass cost more than the
    # arithmetic on them (the kernel zeroes new pages on first touch).
    zbuf = [torch.empty(L, nu, Pk, device=device), torch.empty(L, nu, Pk, device=device)]
    rbuf = torch.empty(L, nu, Pk, device=device)
    lc = min(nu, 8192)
    lbuf = torch.empty(L, lc, P, device=device)
    lbuf64 = torch.empty(L, lc, P, device=device, dtype=torch.float64)
    if k == 1:
        nsgn = (-sgn).contiguous()
        nsw = (-sgn * wn).contiguous()

    def loss_rows(Z: torch.Tensor) -> torch.Tensor:
        """``[L, nu, P*k]`` logits -> per-(layer, problem) weighted loss ``[L, P]`` (float64 sums)."""
        out = torch.zeros(L, P, dtype=torch.float64, device=device)
        for a in range(0, nu, lc):  # float64 sums (f is compared across iterations), chunk-sized temporaries
            z = Z[:, a:a + lc]
            nr = z.shape[1]
            t, t64 = lbuf[:, :nr], lbuf64[:, :nr]
            if k == 1:
                torch.nn.functional.softplus(torch.mul(z, nsgn[a:a + nr], out=t), out=t)
            else:
                zv = z.reshape(L, -1, P, K)
                torch.sub(torch.logsumexp(zv, -1), (zv * oh[a:a + nr].view(-1, P, K)).sum(-1), out=t)
            out += t64.copy_(t).mul_(wn64[a:a + nr]).sum(1)
        return out

    def penalty(th: torch.Tensor) -> torch.Tensor:
        V, _ = split(th)
        return 0.5 * lam * (V * V).sum((-1, -2))

    def gradient(th: torch.Tensor, G: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
        V, _ = split(th)
        G = G.view(L, P, k, d)
        gb = gb.view(L, P, k)
        gV = (G - mu * gb[..., None]) / sd + lam[..., None, None] * V
        return torch.cat([gV.reshape(L, P, k * d), gb], -1)

    def residual(z: torch.Tensor, pos: Any, out: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted d(loss)/d(logit) of the rows ``pos``: ``[L, rows, P*k]`` logits (in ``rbuf``),
        or one layer's ``[rows, P*k]`` (in ``out``)."""
        out = rbuf[:, :z.shape[-2]] if out is None else out
        if k == 1:
            return torch.mul(z, nsgn[pos], out=out).sigmoid_().mul_(nsw[pos])
        zz = z.view(*z.shape[:-2], -1, P, K)
        return torch.mul(torch.softmax(zz, -1).sub_(oh[pos].view(-1, P, K)), wn[pos][..., None],
                         out=out.view(zz.shape)).view(z.shape)

    def run_pass(th: torch.Tensor, Z: torch.Tensor, grad: bool = True, on: torch.Tensor | None = None,
                 Zcur: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Logits of every used row (written into ``Z``) and the data part of the gradient, for all
        (layer, problem): per chunk, one forward product and one backward (``grad=False``: forward only).

        ``on [L]``: layers with an active problem. On the per-layer (oneDNN) path the other layers
        are skipped: their logits are copied from ``Zcur`` (or zeroed) and their gradient is zero,
        values the caller never uses (a finished problem's step is 0 and its result is not accepted)."""
        Wt, b = raw(th, rows.shift)
        if rows.mk is not None:  # oneDNN row blocks (centred): per layer, inner product and its weight gradient
            live = [True] * L if on is None else on.tolist()
            for i in range(L):
                if not live[i]:
                    Z[i] = Zcur[i] if Zcur is not None else 0.0
            # Each layer's weight gradient right after its logits, while its rows are in the last-level
            # cache, and the layers in alternating order from pass to pass, so the layers a pass ends
            # with are still cached when the next one starts (~8% per pass on one core).
            todo = [i for i in range(L) if live[i]]
            rows.flip = not rows.flip
            G = torch.zeros(L, Pk, d, dtype=torch.float64) if grad else None
            gb = torch.zeros(L, Pk, dtype=torch.float64) if grad else None
            for i in (reversed(todo) if rows.flip else todo):
                Z[i] = _dense(torch._C._nn.mkldnn_linear(rows.mk[i], Wt[i], b[i, 0]))
                if grad:
                    r = residual(Z[i], slice(None), out=rbuf[i])
                    gw, gbi = torch.ops.aten.mkldnn_linear_backward_weights(r.to_mkldnn(), rows.mk[i], Wt[i], True)
                    G[i], gb[i] = _dense(gw), _dense(gbi)
            if not grad:
                return Z, None, None
            return Z, G + gb[..., None] * rows.shift, gb  # R^T x = R^T (x - shift) + (R^T 1) shift
        G = torch.zeros(L, Pk, d, device=device, dtype=torch.float64)
        gb = torch.zeros(L, Pk, device=device, dtype=torch.float64)
        for pos, x in rows.chunks():
            z = _logits(x, Wt, b)  # [L, rows, P*k]
            Z[:, pos] = z
            if not grad:
                continue
            r = residual(z, pos)
            G += torch.bmm(r.transpose(1, 2), x).double()
            gb += r.sum(1).double()
        if rows.shift is not None:  # R^T x = R^T (x - shift) + (R^T 1) shift
            G += gb[..., None] * rows.shift
        return Z, G, gb

    theta = torch.zeros(L, P, m, device=device, dtype=torch.float64)
    Z, free = zbuf[0].zero_(), zbuf[1]  # logits at theta; the buffer the next pass writes
    f = loss_rows(Z)  # log 2 (binary) or log K
    g = gradient(theta, G0, r0.double().sum(0)[None].expand(L, Pk))
    gmax = g.abs().amax(-1)
    active = gmax > tol
    floor = torch.zeros_like(active)  # stopped at the float32 noise floor
    gamma = torch.ones(L, P, device=device, dtype=torch.float64) / (h0 + lam)
    S: list[torch.Tensor] = []
    Yh: list[torch.Tensor] = []
    Rh: list[torch.Tensor] = []
    retry = torch.zeros_like(active)  # problems re-trying their last direction with a shorter step
    step = torch.ones(L, P, device=device, dtype=torch.float64)
    p_dir = torch.zeros_like(theta)
    gd = torch.zeros(L, P, device=device, dtype=torch.float64)
    if bool(active.any()):
        # First step: along -gamma0 * g with the exact line minimum. A forward-only pass gives the
        # direction's logits; the first iteration's pass then evaluates the minimiser (one matmul
        # more than a unit step, and no retry when the diagonal guess gamma0 overshoots).
        p_dir = -gamma[..., None] * g * active[..., None]
        gd = (g * p_dir).sum(-1)
        Zp, _, _ = run_pass(p_dir, free, grad=False, on=active.any(1))
        t0, lowers = _segment_minimum(active, Z, Zp, theta, p_dir, step, f, gd, lam, split, k, K, sgn, oh, wn,
                                      hi=16.0)
        del Zp
        retry = active & lowers
        step = torch.where(retry, t0, step)
        floor = floor | (active & ~lowers)
        active = active & lowers
    n_iter = 0
    while n_iter < max_iter and bool(active.any()):
        n_iter += 1
        # -- two-loop recursion (Nocedal & Wright alg. 7.4), batched over (layer, problem)
        q = g.clone()
        alphas = []
        for s_, y_, rho in zip(reversed(S), reversed(Yh), reversed(Rh)):
            a = rho * (s_ * q).sum(-1)
            q -= a[..., None] * y_
            alphas.append(a)
        r = gamma[..., None] * q
        for s_, y_, rho, a in zip(S, Yh, Rh, reversed(alphas)):
            r += (a - rho * (y_ * r).sum(-1))[..., None] * s_
        new_dir = r.neg_()
        new_gd = (g * new_dir).sum(-1)
        bad = new_gd >= 0  # not a descent direction (numerical): scaled steepest descent
        if bool(bad.any()):
            new_dir = torch.where(bad[..., None], -gamma[..., None] * g, new_dir)
            new_gd = (g * new_dir).sum(-1)
        p_dir = torch.where(retry[..., None], p_dir, new_dir)
        gd = torch.where(retry, gd, new_gd)
        step = torch.where(retry, step, torch.ones_like(step)) * active
        trial = theta + step[..., None] * p_dir
        # -- one pass: logits and gradient at every trial point
        Zt, G, gb = run_pass(trial, free, on=active.any(1), Zcur=Z)
        ft = loss_rows(Zt) + penalty(trial)
        gt = gradient(trial, G, gb)
        ok = ft <= f + 1e-4 * step * gd
        accept = active & ok
        # -- history: accepted problems push their pair, the others a no-op pair
        s_new = (trial - theta) * accept[..., None]
        y_new = (gt - g) * accept[..., None]
        sy = (s_new * y_new).sum(-1)
        yy = (y_new * y_new).sum(-1)
        good = accept & (sy > 1e-10 * yy.sqrt() * s_new.norm(dim=-1)) & (yy > 0)
        S.append(s_new)
        Yh.append(y_new)
        Rh.append(torch.where(good, 1.0 / sy.clamp(min=1e-300), torch.zeros_like(sy)))
        if len(S) > history_size:
            S.pop(0), Yh.pop(0), Rh.pop(0)
        gamma = torch.where(good, sy / yy.clamp(min=1e-300), gamma)
        f_prev = f
        theta = torch.where(accept[..., None], trial, theta)
        f = torch.where(accept, ft, f)
        g = torch.where(accept[..., None], gt, g)
        # -- failed Armijo: exact 1-D minimum along the segment, from the stored logits
        fail = active & ~ok
        # a retry is the exact 1-D minimum of the segment, which satisfies Armijo in exact arithmetic:
        # failing it again means the objective is at float32 resolution (the noise floor)
        floor = floor | (fail & retry)
        fail = fail & ~retry
        retry = torch.zeros_like(active)
        if bool(fail.any()):
            t_new, lowers = _segment_minimum(fail, Z, Zt, theta, p_dir, step, f, gd, lam, split, k, K, sgn, oh, wn)
            retry = fail & lowers
            step = torch.where(retry, t_new, step)
            floor = floor | (fail & ~lowers)
        if not bool(accept.all()):  # keep the old logits of the problems that did not move
            torch.where(accept.repeat_interleave(k, dim=1)[:, None, :], Zt, Z, out=Zt)
        Z, free = Zt, Z
        del Zt
        done = g.abs().amax(-1) <= tol
        if ftol > 0:
            flat = accept & ((f_prev - f) <= ftol * torch.clamp(f.abs(), min=1.0)) & ~done
            floor = floor | flat
        active = active & ~done & ~floor
    gmax = g.abs().amax(-1)
    prob_conv = (gmax <= tol) | (floor & (gmax <= max(tol, 1e-4)))
    W, b = raw(theta)
    coef = W.view(L, P, k, d).permute(0, 1, 3, 2).contiguous()
    return BatchedFit(coef, b.view(L, P, k), K, Ct.float(), n_iter, bool(prob_conv.all()), float(gmax.max()), stats,
                      prob_conv)


_BACKENDS = ("auto", "native", "torch")


def _use_native(backend: str, device: torch.device, feats: FeatureSource, K: int) -> bool:
    """Whether this fit runs the compiled per-layer solver (see ``backend`` in fit_logistic_batched)."""
    if backend not in _BACKENDS:
        raise ProbeFitError(f"backend must be one of {_BACKENDS}; got {backend!r}")
    if backend == "torch":
        return False
    why = None
    if device.type != "cpu":
        why = f"it runs on the CPU and the fit asks for device {str(device)!r}"
    elif not isinstance(feats, TensorFeatures) or feats.x.device.type != "cpu":
        why = "it needs in-memory features on the CPU (streamed features use the batched passes)"
    elif K != 2:
        why = f"it fits two classes and these labels have {K}"
    else:
        import importlib.util

        if importlib.util.find_spec("numba") is None:
            why = "numba is not installed (pip install numba)"
    if why is None:
        return True
    if backend == "native":
        raise ProbeFitError(f"backend='native' cannot run this fit: {why}; use backend='auto' or 'torch'")
    return False


def _solve_native(rows: _Rows, sgn: torch.Tensor, wn: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor,
                  lam: torch.Tensor, tol: float, ftol: float, max_iter: int, history: int
                  ) -> tuple[torch.Tensor, int, np.ndarray]:
    """The compiled solver, layer by layer: each layer's used rows are gathered and centred
    (as in the statistics pass) into a buffer that stays in cache while its L-BFGS runs.
    Layers run on up to ``torch.get_num_threads()`` threads (the kernels release the GIL).
    Returns ``theta [L, P, d + 1]`` (standardised space), the most passes any layer took and
    ``status [L, P, 2]`` (largest gradient entry, stopped at the float32 floor)."""
    from . import _native

    L, P, d = mu.shape[0], mu.shape[1], mu.shape[-1]
    nsgn = np.ascontiguousarray((-sgn).numpy(), dtype=np.float32)
    w = np.ascontiguousarray(wn.numpy(), dtype=np.float32)
    mu_l = mu[:, :, 0, :]
    sd_np = np.ascontiguousarray(sd[:, :, 0, :].numpy())
    lam_np = np.ascontiguousarray(lam.numpy())
    theta = torch.zeros(L, P, d + 1, dtype=torch.float64)
    status = np.zeros((L, P, 2))
    iters = np.zeros(L, dtype=np.int64)

    def work(layers: range) -> None:
        buf = torch.empty(rows.n_used, d)
        for layer in layers:
            shift = rows.shift[layer]  # [1, d] float64 of the float32 mean the statistics pass centred on
            x = rows.gather_layer(layer, buf, shift.float())
            mus = np.ascontiguousarray((mu_l[layer] - shift).numpy())
            iters[layer] = _native.solve_layer(x.numpy(), nsgn, w, mus, sd_np[layer], lam_np[layer], float(tol),
                                               float(ftol), int(max_iter), int(history), theta[layer].numpy(),
                                               status[layer])

    threads = max(1, min(torch.get_num_threads(), L))
    if threads == 1:
        work(range(L))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(work, [range(t, L, threads) for t in range(threads)]))
    return theta, int(iters.max()) if L else 0, status


def project(features: Any, *, fit: BatchedFit | None = None, directions: torch.Tensor | None = None,
            shared_directions: torch.Tensor | None = None, device: Any = None, chunk_rows: int = 4096,
            rows: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """One pass computing, for every example (or only ``rows``, a boolean mask):

    - ``"logit"``: ``fit.decision`` -> ``[L, P, n, k]``
    - ``"dir"``: projections on per-(layer, problem) ``directions [L, P, d]`` -> ``[L, P, n]``
    - ``"shared"``: projections on ``shared_directions [Q, d]`` (same at every layer) -> ``[L, Q, n]``

    Outputs are on the CPU, ordered by example index (restricted to ``rows`` when given). All
    requested projections are one batched matmul per chunk.
    """
    feats = as_features(features)
    device = torch.device(device) if device is not None else default_device()
    n, L = feats.n, feats.n_layers
    keep = None if rows is None else torch.as_tensor(np.asarray(rows, bool))
    pos = None
    if keep is not None:
        pos = torch.full((n,), -1, dtype=torch.long)
        pos[keep] = torch.arange(int(keep.sum()))
        n_out = int(keep.sum())
    else:
        n_out = n
    blocks: list[tuple[str, torch.Tensor, torch.Tensor | None]] = []  # (name, [L, c, d], bias [L, c])
    if fit is not None:
        Pf, kf = fit.coef.shape[1], fit.coef.shape[3]
        blocks.append(("logit", fit.coef.permute(0, 1, 3, 2).reshape(L, Pf * kf, feats.d),
                       fit.intercept.reshape(L, Pf * kf)))
    if directions is not None:
        blocks.append(("dir", directions, None))
    if shared_directions is not None:
        sd = torch.as_tensor(shared_directions, dtype=torch.float32)
        blocks.append(("shared", sd[None].expand(L, *sd.shape), None))
    if not blocks:
        return {}
    Wall = torch.cat([b[1].to(device, torch.float32) for b in blocks], 1).contiguous()  # [L, c_total, d]
    ball = torch.cat([(b[2] if b[2] is not None else torch.zeros(L, b[1].shape[1])).to(device, torch.float32)
                      for b in blocks], 1)[..., None]
    out_all = torch.zeros(L, Wall.shape[1], n_out)
    with torch.no_grad():
        for idx, x in feats.chunks(device, chunk_rows):
            idx_cpu = idx.cpu()
            if pos is not None:
                sel = keep[idx_cpu]
                if not bool(sel.any()):
                    continue
                x = x[:, sel.to(x.device)]
                dst = pos[idx_cpu[sel]]
            else:
                dst = idx_cpu
            out_all[:, :, dst] = _logits(x, Wall, ball[..., 0]).transpose(1, 2).cpu()
    out: dict[str, torch.Tensor] = {}
    c0 = 0
    for name, Wb, _ in blocks:
        c = Wb.shape[1]
        blk = out_all[:, c0:c0 + c]
        c0 += c
        if name == "logit":
            out[name] = blk.view(L, Pf, kf, n_out).permute(0, 1, 3, 2)
        else:
            out[name] = blk
    return out
