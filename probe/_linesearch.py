"""The batched trainer's line search (:mod:`probe.batched`): for problems whose Armijo test failed, the exact
minimiser of the objective along the segment, from the logits stored at both ends (logits are linear in the step)."""

from __future__ import annotations

import torch


def _segment_minimum(fail, Z0, Z1, theta, p_dir, step, f0, gd, lam, split, k, K, sgn, oh, wn,
                     newton_steps: int = 12, hi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """For the (layer, problem) pairs in ``fail`` (Armijo failed at ``theta + step * p_dir``):
    the step in ``(0, hi * step)`` minimising the objective along that line, computed from the
    logits at ``theta`` and ``theta + step * p_dir`` (logits are linear in the step) by
    safeguarded Newton on the exact, convex 1-D function (float32 iterations, float64 final
    value); and whether that step satisfies Armijo (if not: the float32 noise floor)."""
    li_all, pi_all = torch.nonzero(fail, as_tuple=True)
    live = torch.nonzero(wn.sum(1) > 0).flatten()  # rows some problem trains on
    # problems in groups of at most ~2^19 logits, so the temporaries stay O(1) in the number of rows
    per = max(1, (1 << 19) // max(1, k * live.numel()))
    t_new = torch.zeros_like(step)
    lowers = torch.zeros_like(fail)
    for g0 in range(0, li_all.numel(), per):
        li, pi = li_all[g0:g0 + per], pi_all[g0:g0 + per]
        t, ok = _segment_group(li, pi, live, Z0, Z1, theta, p_dir, step, f0, gd, lam, split, k, K, sgn, oh, wn,
                               newton_steps, hi)
        t_new[li, pi] = t
        lowers[li, pi] = ok
    return t_new, lowers


def _segment_group(li, pi, live, Z0, Z1, theta, p_dir, step, f0, gd, lam, split, k, K, sgn, oh, wn, newton_steps,
                   hi):
    """:func:`_segment_minimum` for the problems ``(li, pi)``: returns their steps and Armijo flags."""
    F = li.numel()
    cols = (pi[:, None] * k + torch.arange(k, device=pi.device)[None]).reshape(-1)  # [F*k]
    lrep = li.repeat_interleave(k)
    a0 = Z0[lrep, :, cols][:, live].view(F, k, -1)
    dz = Z1[lrep, :, cols][:, live].view(F, k, -1) - a0  # [F, k, n_live]
    V, _ = split(theta[li, pi])
    D, _ = split(p_dir[li, pi])  # [F, k, d]
    T = step[li, pi]
    vv = (V * V).sum((-1, -2))
    vd = (V * D).sum((-1, -2)) * T  # along u: theta + u * T * p_dir
    dd = (D * D).sum((-1, -2)) * T * T
    lm = lam[li, pi]
    w = wn[live].T[pi]  # [F, n_live]
    if k == 1:
        s = sgn[live].T[pi]  # [F, n_live]
    else:
        o = oh[live].T.reshape(-1, K, live.numel())[pi]  # [F, K, n_live]

    def phi(u: torch.Tensor, value: bool = False):
        uf = u.float()[:, None, None]
        if value:  # float64 objective, comparable with f0
            z = a0.double() + u[:, None, None] * dz.double()
            ww = w.double()
        else:
            z = a0 + uf * dz
            ww = w
        if k == 1:
            ss = s.double() if value else s
            m_ = -ss * z[:, 0]
            if value:
                return (torch.nn.functional.softplus(m_) * ww).sum(-1) + 0.5 * lm * (vv + 2 * u * vd + u * u * dd)
            sig = torch.sigmoid(m_)
            d1 = (-s * sig * dz[:, 0] * w).sum(-1)
            d2 = (sig * (1 - sig) * dz[:, 0] ** 2 * w).sum(-1)
        else:
            oo = o.double() if value else o
            if value:
                val = ((torch.logsumexp(z, 1) - (z * oo).sum(1)) * ww).sum(-1)
                return val + 0.5 * lm * (vv + 2 * u * vd + u * u * dd)
            pr = torch.softmax(z, 1)
            d1 = (((pr - o) * dz).sum(1) * w).sum(-1)
            mdz = (pr * dz).sum(1)
            d2 = (((pr * dz * dz).sum(1) - mdz * mdz) * w).sum(-1)
        return d1.double() + lm * (vd + u * dd), d2.double() + lm * dd

    lo = torch.zeros_like(T)
    up = torch.full_like(T, hi)
    u = torch.full_like(T, min(1.0, 0.5 * hi))
    for _ in range(newton_steps):
        d1, d2 = phi(u)
        lo = torch.where(d1 < 0, u, lo)
        up = torch.where(d1 >= 0, u, up)
        un = u - d1 / d2.clamp(min=1e-300)
        inside = (un > lo) & (un < up) & torch.isfinite(un)
        u_next = torch.where(inside, un, 0.5 * (lo + up))
        done = bool(((u_next - u).abs() <= 1e-4 * u.abs()).all())
        u = u_next
        if done:
            break
    val = phi(u, value=True)
    return u * T, (val <= f0[li, pi] + 1e-4 * u * T * gd[li, pi]) & (u > 1e-10)
