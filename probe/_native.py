"""Compiled per-layer L-BFGS for binary probes on CPU (numba): the fast path of
:func:`probe.batched.fit_logistic_batched` for in-memory features.

Why per layer, compiled: scikit-learn fits one layer at a time, so that layer's rows (2250 x 576
floats = 5 MB) stay in the last-level cache for all of its fits, while a pass batched over 30
layers streams all 155 MB from memory every iteration; and a Python L-BFGS loop per layer costs
~20 ms of interpreter overhead per call. Here the whole L-BFGS loop of one layer (all of its
problems in lockstep, so the two products per pass are matrix products with one column per
problem) runs in compiled code while that layer is cached.

The algorithm is the one :mod:`probe.batched` documents (same objective, tolerances and line
search from stored logits): one pass per iteration, Armijo at the trial step, and the exact 1-D
minimum along the segment (safeguarded Newton on stored logits) as the next trial where Armijo
fails. The differences: each problem keeps its own L-BFGS history of accepted pairs, and the
kernels are written for this shape (narrow outputs, one layer in cache):

- logits ``X W^T`` with a register tile of 2 rows x 6 problems (vectorised along the features);
  only the problems still active are packed into the tiles, so a layer's slowest problem does
  not make the finished ones pay,
- weight gradient ``R^T X`` of the active problems over blocks of 8 rows (float32 per block,
  flushed into float64 every 512 rows),
- residual and loss with a vectorised float32 ``exp`` (Cephes polynomial) and ``log1p``
  (``2 atanh(e / (2 + e))`` series), summed per problem in float64.

Importing this module imports numba (and compiles nothing); the kernels compile on first use
(~10 s) and numba caches them on disk (``cache=True``: next to this file, or in the user's cache
directory when that is read-only), so later processes load them in well under a second.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# fastmath without the no-NaN/no-inf assumptions (the solver's isfinite checks must hold): reassociation
# is what lets LLVM vectorise the reductions
_FAST = {"reassoc", "contract", "nsz", "arcp", "afn"}
_OPTS = dict(nogil=True, fastmath=_FAST, boundscheck=False, error_model="numpy", cache=True)
_TILE = 6  # problems per register tile of the logits kernel


@numba.njit(**_OPTS)
def _logits(X, W, b, Z):
    """``Z[i, p] = X[i] . W[p] + b[p]`` (X ``[n, d]``, W ``[P, d]`` float32)."""
    n, d = X.shape
    P = W.shape[0]
    q = 0
    while q + _TILE <= P:
        for i in range(0, n - 1, 2):
            a0 = np.float32(0.0); a1 = np.float32(0.0); a2 = np.float32(0.0)
            a3 = np.float32(0.0); a4 = np.float32(0.0); a5 = np.float32(0.0)
            c0 = np.float32(0.0); c1 = np.float32(0.0); c2 = np.float32(0.0)
            c3 = np.float32(0.0); c4 = np.float32(0.0); c5 = np.float32(0.0)
            for j in range(d):
                x = X[i, j]
                y = X[i + 1, j]
                w0 = W[q, j]; w1 = W[q + 1, j]; w2 = W[q + 2, j]
                w3 = W[q + 3, j]; w4 = W[q + 4, j]; w5 = W[q + 5, j]
                a0 += x * w0; a1 += x * w1; a2 += x * w2; a3 += x * w3; a4 += x * w4; a5 += x * w5
                c0 += y * w0; c1 += y * w1; c2 += y * w2; c3 += y * w3; c4 += y * w4; c5 += y * w5
            Z[i, q] = a0 + b[q]; Z[i, q + 1] = a1 + b[q + 1]; Z[i, q + 2] = a2 + b[q + 2]
            Z[i, q + 3] = a3 + b[q + 3]; Z[i, q + 4] = a4 + b[q + 4]; Z[i, q + 5] = a5 + b[q + 5]
            Z[i + 1, q] = c0 + b[q]; Z[i + 1, q + 1] = c1 + b[q + 1]; Z[i + 1, q + 2] = c2 + b[q + 2]
            Z[i + 1, q + 3] = c3 + b[q + 3]; Z[i + 1, q + 4] = c4 + b[q + 4]; Z[i + 1, q + 5] = c5 + b[q + 5]
        if n % 2 == 1:
            for p in range(q, q + _TILE):
                a = np.float32(0.0)
                for j in range(d):
                    a += X[n - 1, j] * W[p, j]
                Z[n - 1, p] = a + b[p]
        q += _TILE
    for p in range(q, P):  # the remaining problems: 4 rows at a time
        for i in range(0, n - 3, 4):
            a0 = np.float32(0.0); a1 = np.float32(0.0); a2 = np.float32(0.0); a3 = np.float32(0.0)
            for j in range(d):
                w = W[p, j]
                a0 += X[i, j] * w; a1 += X[i + 1, j] * w; a2 += X[i + 2, j] * w; a3 += X[i + 3, j] * w
            Z[i, p] = a0 + b[p]; Z[i + 1, p] = a1 + b[p]; Z[i + 2, p] = a2 + b[p]; Z[i + 3, p] = a3 + b[p]
        for i in range(n - n % 4, n):
            a = np.float32(0.0)
            for j in range(d):
                a += X[i, j] * W[p, j]
            Z[i, p] = a + b[p]


@numba.njit(**_OPTS)
def _forward(X, th, active, mus, sd, Wf, bf, Zf, Z):
    """Logits of the active problems' parameters ``th`` into their columns of ``Z [n, P]``.
    The active problems are packed into ``Wf``/``Zf`` (flat scratch) and padded with zero
    weights to whole tiles of the logits kernel where that is cheaper than the one-problem
    kernel for the remainder (two or fewer left over: not padded); finished problems cost
    nothing."""
    n, d = X.shape
    P = th.shape[0]
    na = 0
    for p in range(P):
        na += 1 if active[p] else 0
    Pp = na if na % _TILE < 3 else na + _TILE - na % _TILE
    W = Wf[:Pp * d].reshape((Pp, d))
    b = bf[:Pp]
    Zp = Zf[:n * Pp].reshape((n, Pp))
    q = 0
    for p in range(P):
        if not active[p]:
            continue
        acc = 0.0
        for j in range(d):
            v = th[p, j] / sd[p, j]
            W[q, j] = v
            acc += mus[p, j] * v
        b[q] = th[p, d] - acc
        q += 1
    W[na:] = 0.0
    b[na:] = 0.0
    _logits(X, W, b, Zp)
    for i in range(n):
        q = 0
        for p in range(P):
            if active[p]:
                Z[i, p] = Zp[i, q]
                q += 1


@numba.njit(**_OPTS)
def _weight_grad(X, R, acc, G, gb, active):
    """``G = R^T X`` and ``gb = R^T 1`` (float64) for the problems ``p`` with ``active[p]``
    (the others' rows are left at 0), from float32 sums over blocks of 8 rows flushed into
    float64 every 512 rows. ``acc``: float32 scratch ``[P, d]``."""
    n, d = X.shape
    P = R.shape[1]
    G[:] = 0.0
    gb[:] = 0.0
    acc[:] = 0.0
    nb = n - n % 8
    for i in range(0, nb, 8):
        for p in range(P):
            if not active[p]:
                continue
            r0 = R[i, p]; r1 = R[i + 1, p]; r2 = R[i + 2, p]; r3 = R[i + 3, p]
            r4 = R[i + 4, p]; r5 = R[i + 5, p]; r6 = R[i + 6, p]; r7 = R[i + 7, p]
            gb[p] += (np.float64(r0) + r1 + r2 + r3) + (np.float64(r4) + r5 + r6 + r7)
            for j in range(d):
                acc[p, j] += ((r0 * X[i, j] + r1 * X[i + 1, j]) + (r2 * X[i + 2, j] + r3 * X[i + 3, j])) + (
                    (r4 * X[i + 4, j] + r5 * X[i + 5, j]) + (r6 * X[i + 6, j] + r7 * X[i + 7, j]))
        if (i // 8) % 64 == 63:
            for p in range(P):
                for j in range(d):
                    G[p, j] += acc[p, j]
                    acc[p, j] = 0.0
    for i in range(nb, n):
        for p in range(P):
            if not active[p]:
                continue
            r0 = R[i, p]
            gb[p] += r0
            for j in range(d):
                acc[p, j] += r0 * X[i, j]
    for p in range(P):
        for j in range(d):
            G[p, j] += acc[p, j]


@numba.njit(**_OPTS)
def _exp_neg(a, out, kbits, cnt):
    """``out[:cnt] = exp(a[:cnt])`` for float32 ``a <= 0`` (Cephes ``expf`` polynomial, ~1 ulp;
    below -87: ~exp(-87)), vectorised: the power of two is built from its bits in ``kbits``
    (int32 scratch)."""
    for i in range(cnt):
        x = max(a[i], np.float32(-87.0))
        k = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
        r = x - k * np.float32(0.693359375)
        r = r - k * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        out[i] = p * r * r + r + np.float32(1.0)
        kbits[i] = (np.int32(k) + np.int32(127)) << 23
    two_k = kbits.view(np.float32)
    for i in range(cnt):
        out[i] *= two_k[i]


@numba.njit(**_OPTS)
def _log1p_unit(e):
    """``log1p(e)`` for float32 ``e`` in [0, 1]: ``2 atanh(t)``, ``t = e / (2 + e) <= 1/3``."""
    t = e / (np.float32(2.0) + e)
    t2 = t * t
    s = np.float32(1.0 / 15.0)
    s = s * t2 + np.float32(1.0 / 13.0)
    s = s * t2 + np.float32(1.0 / 11.0)
    s = s * t2 + np.float32(1.0 / 9.0)
    s = s * t2 + np.float32(1.0 / 7.0)
    s = s * t2 + np.float32(1.0 / 5.0)
    s = s * t2 + np.float32(1.0 / 3.0)
    s = s * t2 + np.float32(1.0)
    return np.float32(2.0) * t * s


@numba.njit(**_OPTS)
def _residual_loss(Z, nsgn, w, R, f, m_buf, e_buf, k_buf):
    """For logits ``Z [n, P]``: ``f[p] = sum_i w[i, p] softplus(-sgn z)`` (float64 sums of
    float32 terms) and ``R = -sgn w sigmoid(-sgn z)`` (d loss / d z).
    ``nsgn = -sgn``; the ``*_buf`` are flat scratch of ``n * P``."""
    n, P = Z.shape
    N = n * P
    z = Z.reshape(N)
    s = nsgn.reshape(N)
    wf = w.reshape(N)
    for i in range(N):
        m_buf[i] = -abs(s[i] * z[i])
    _exp_neg(m_buf, e_buf, k_buf, N)
    r = R.reshape(N)
    for i in range(N):
        m = s[i] * z[i]
        e = e_buf[i]
        sig = np.float32(1.0) / (np.float32(1.0) + e)
        r[i] = s[i] * wf[i] * (sig if m >= 0 else e * sig)
        m_buf[i] = wf[i] * (max(m, np.float32(0.0)) + _log1p_unit(e))
    f[:] = 0.0
    for i in range(n):
        for p in range(P):
            f[p] += m_buf[i * P + p]


@numba.njit(**_OPTS)
def _gradient(th, G, gb, mus, sd, lam, g):
    """Gradient of the per-row-scaled objective in standardised space."""
    P, d = G.shape
    for p in range(P):
        for j in range(d):
            g[p, j] = (G[p, j] - mus[p, j] * gb[p]) / sd[p, j] + lam[p] * th[p, j]
        g[p, d] = gb[p]


@numba.njit(**_OPTS)
def _segment_exp(p, Z0, Z1, nsgn, uf, a_buf, e_buf, k_buf):
    """``e_buf[i] = exp(-|m_i|)`` for problem ``p``'s margins ``m = -sgn (Z0 + uf (Z1 - Z0))``."""
    n = Z0.shape[0]
    for i in range(n):
        a_buf[i] = -abs(nsgn[i, p] * (Z0[i, p] + uf * (Z1[i, p] - Z0[i, p])))
    _exp_neg(a_buf, e_buf, k_buf, n)


@numba.njit(**_OPTS)
def _segment_min(p, Z0, Z1, nsgn, w, vv, vd, dd, lam, hi, newton_steps, a_buf, e_buf, k_buf):
    """Problem ``p``: logits are ``Z0 + u (Z1 - Z0)`` along the segment (u = 1: the trial step).
    Returns the ``u`` in ``(0, hi)`` minimising the objective along it (safeguarded Newton on
    the exact, convex 1-D function, float32 logits) and that objective (float64 sum)."""
    n = Z0.shape[0]
    lo = 0.0
    up = hi
    u = min(1.0, 0.5 * hi)
    for _ in range(newton_steps):
        uf = np.float32(u)
        _segment_exp(p, Z0, Z1, nsgn, uf, a_buf, e_buf, k_buf)
        d1 = 0.0
        d2 = 0.0
        for i in range(n):
            dz = Z1[i, p] - Z0[i, p]
            m = nsgn[i, p] * (Z0[i, p] + uf * dz)
            e = e_buf[i]
            inv = np.float32(1.0) / (np.float32(1.0) + e)
            sig = inv if m >= 0 else e * inv  # sigmoid(m)
            d1 += w[i, p] * nsgn[i, p] * dz * sig
            d2 += w[i, p] * sig * (np.float32(1.0) - sig) * dz * dz
        d1 += lam * (vd + u * dd)
        d2 += lam * dd
        if d1 < 0:
            lo = u
        else:
            up = u
        un = u - d1 / max(d2, 1e-300)
        u_next = un if (un > lo and un < up and math.isfinite(un)) else 0.5 * (lo + up)
        fin = abs(u_next - u) <= 1e-4 * abs(u)
        u = u_next
        if fin:
            break
    uf = np.float32(u)
    _segment_exp(p, Z0, Z1, nsgn, uf, a_buf, e_buf, k_buf)
    val = 0.0
    for i in range(n):
        m = nsgn[i, p] * (Z0[i, p] + uf * (Z1[i, p] - Z0[i, p]))
        val += w[i, p] * (max(m, np.float32(0.0)) + _log1p_unit(e_buf[i]))
    return u, val + 0.5 * lam * (vv + 2.0 * u * vd + u * u * dd)


@numba.njit(**_OPTS)
def _line_terms(th, dr, p, step, d):
    """``||V||^2``, ``V . D * step`` and ``||D||^2 step^2`` of problem ``p`` (penalised part)."""
    vv = 0.0
    vd = 0.0
    dd = 0.0
    for j in range(d):
        vv += th[p, j] * th[p, j]
        vd += th[p, j] * dr[p, j]
        dd += dr[p, j] * dr[p, j]
    return vv, vd * step, dd * step * step


@numba.njit(**_OPTS)
def solve_layer(X, nsgn, w, mus, sd, lam, tol, ftol, max_iter, history, theta, status):
    """L-BFGS for the ``P`` binary problems of one layer (see the module docstring).

    X ``[n, d]`` float32 centred rows; nsgn, w ``[n, P]`` float32 (minus the label sign, the
    row weight normalised to sum 1 per problem; 0 outside a problem's training rows); mus, sd
    ``[P, d]`` float64 (mean minus centring shift, std); lam ``[P]``. Writes ``theta
    [P, d + 1]`` (standardised weights, intercept) and ``status [P, 2]`` (largest gradient
    entry, float32-floor flag); returns the number of passes."""
    n, d = X.shape
    P = nsgn.shape[1]
    m = d + 1
    N = n * P
    Pmax = P + _TILE  # packed active problems, padded to whole tiles
    Wf = np.zeros(Pmax * d, np.float32)
    bf = np.zeros(Pmax, np.float32)
    Zf = np.zeros(n * Pmax, np.float32)
    Z = np.zeros((n, P), np.float32)  # logits at theta
    Zt = np.zeros((n, P), np.float32)  # logits at the trial point
    R = np.zeros((n, P), np.float32)
    acc = np.zeros((P, d), np.float32)
    G = np.zeros((P, d))
    gb = np.zeros(P)
    m_buf = np.zeros(N, np.float32)  # flat scratch (N >= n: also the segment search's)
    e_buf = np.zeros(N, np.float32)
    k_buf = np.zeros(N, np.int32)
    f = np.zeros(P)
    ft = np.zeros(P)
    g = np.zeros((P, m))
    gt = np.zeros((P, m))
    S = np.zeros((history, P, m))
    Y = np.zeros((history, P, m))
    rho = np.zeros((history, P))
    count = np.zeros(P, np.int64)
    head = np.zeros(P, np.int64)  # next slot of each problem's ring
    alpha = np.zeros(history)
    q = np.zeros(m)
    pd = np.zeros((P, m))  # search direction
    trial = np.zeros((P, m))
    gd = np.zeros(P)
    step = np.ones(P)
    gamma = np.zeros(P)
    active = np.zeros(P, np.bool_)
    retry = np.zeros(P, np.bool_)
    floor = np.zeros(P, np.bool_)
    theta[:] = 0.0

    # theta = 0: logits 0, the gradient from one backward product
    _residual_loss(Z, nsgn, w, R, f, m_buf, e_buf, k_buf)
    active[:] = True
    _weight_grad(X, R, acc, G, gb, active)
    _gradient(theta, G, gb, mus, sd, lam, g)
    for p in range(P):
        gamma[p] = 1.0 / (0.25 + lam[p])
        active[p] = np.abs(g[p]).max() > tol
    if active.any():
        # first step along -gamma0 g with the exact line minimum (forward only; one pass)
        for p in range(P):
            for j in range(m):
                pd[p, j] = -gamma[p] * g[p, j] if active[p] else 0.0
            gd[p] = (g[p] * pd[p]).sum()
        _forward(X, pd, active, mus, sd, Wf, bf, Zf, Zt)
        for p in range(P):
            if not active[p]:
                continue
            vv, vd, dd = _line_terms(theta, pd, p, 1.0, d)
            u, val = _segment_min(p, Z, Zt, nsgn, w, vv, vd, dd, lam[p], 16.0, 12, m_buf, e_buf, k_buf)
            if val <= f[p] + 1e-4 * u * gd[p] and u > 1e-10:
                retry[p] = True
                step[p] = u
            else:
                floor[p] = True
                active[p] = False
    n_iter = 0
    while n_iter < max_iter and active.any():
        n_iter += 1
        for p in range(P):
            if not active[p]:
                step[p] = 0.0
                continue
            if not retry[p]:  # two-loop recursion over this problem's accepted pairs
                q[:] = g[p]
                c = count[p]
                for t in range(c):
                    s = (head[p] - 1 - t) % history
                    a = rho[s, p] * (S[s, p] * q).sum()
                    alpha[t] = a
                    q -= a * Y[s, p]
                q *= gamma[p]
                for t in range(c - 1, -1, -1):
                    s = (head[p] - 1 - t) % history
                    beta = rho[s, p] * (Y[s, p] * q).sum()
                    q += (alpha[t] - beta) * S[s, p]
                gnew = -(g[p] * q).sum()
                if gnew < 0:
                    pd[p] = -q
                    gd[p] = gnew
                else:  # not a descent direction (numerically): scaled steepest descent
                    pd[p] = -gamma[p] * g[p]
                    gd[p] = (g[p] * pd[p]).sum()
                step[p] = 1.0
            trial[p] = theta[p] + step[p] * pd[p]
        # one pass: logits, loss, residual and gradient at every trial point
        _forward(X, trial, active, mus, sd, Wf, bf, Zf, Zt)
        _residual_loss(Zt, nsgn, w, R, ft, m_buf, e_buf, k_buf)
        _weight_grad(X, R, acc, G, gb, active)
        _gradient(trial, G, gb, mus, sd, lam, gt)
        for p in range(P):
            if not active[p]:
                continue
            pen = 0.0
            for j in range(d):
                pen += trial[p, j] * trial[p, j]
            ftp = ft[p] + 0.5 * lam[p] * pen
            was_retry = retry[p]
            retry[p] = False
            if ftp <= f[p] + 1e-4 * step[p] * gd[p]:  # accepted
                s_new = trial[p] - theta[p]
                y_new = gt[p] - g[p]
                sy = (s_new * y_new).sum()
                yy = (y_new * y_new).sum()
                if sy > 1e-10 * math.sqrt(yy) * math.sqrt((s_new * s_new).sum()) and yy > 0:
                    h = head[p]
                    S[h, p] = s_new
                    Y[h, p] = y_new
                    rho[h, p] = 1.0 / sy
                    head[p] = (h + 1) % history
                    count[p] = min(count[p] + 1, history)
                    gamma[p] = sy / yy
                f_prev = f[p]
                theta[p] = trial[p]
                f[p] = ftp
                g[p] = gt[p]
                for i in range(n):
                    Z[i, p] = Zt[i, p]
                if np.abs(g[p]).max() <= tol:
                    active[p] = False
                elif ftol > 0 and f_prev - ftp <= ftol * max(abs(ftp), 1.0):
                    floor[p] = True  # no representable progress: the float32 noise floor
                    active[p] = False
            elif was_retry:  # the exact segment minimum failed Armijo again: the noise floor
                floor[p] = True
                active[p] = False
            else:  # the exact 1-D minimum along the segment, from the stored logits
                vv, vd, dd = _line_terms(theta, pd, p, step[p], d)
                u, val = _segment_min(p, Z, Zt, nsgn, w, vv, vd, dd, lam[p], 1.0, 12, m_buf, e_buf, k_buf)
                if val <= f[p] + 1e-4 * u * step[p] * gd[p] and u > 1e-10:
                    retry[p] = True
                    step[p] = u * step[p]
                else:
                    floor[p] = True
                    active[p] = False
    for p in range(P):
        status[p, 0] = np.abs(g[p]).max()
        status[p, 1] = 1.0 if floor[p] else 0.0
    return n_iter
