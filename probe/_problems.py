"""Problems of the batched probe trainer (:mod:`probe.batched`): labels and weights checked and class-balanced,
and the statistics pass (per layer and problem: training-row mean, std and class means; :class:`FitStats`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workbench.errors import WorkbenchError

from ._rows import _auto_chunk, _Rows
from .features import FeatureError, FeatureSource, as_features


class ProbeFitError(WorkbenchError, ValueError):
    """Labels or weights that cannot define a probe (one class, no training rows...)."""


@dataclass
class FitStats:
    """Per (layer, problem) statistics of the training rows (``weight > 0``).

    mean, std: ``[L, P, d]`` unweighted mean and population std (``StandardScaler``; a
    constant feature gets std 1); class_means: ``[L, P, K, d]`` unweighted class means;
    weight_sum ``[P]`` (after class balancing), class_counts ``[P, K]`` (training rows).
    """

    mean: torch.Tensor
    std: torch.Tensor
    class_means: torch.Tensor
    weight_sum: torch.Tensor
    class_counts: torch.Tensor



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
        if bool((wt < 0).any()) or not bool(torch.isfinite(wt).all()):
            raise ProbeFitError("weights must be finite and >= 0 (0 excludes an example from a problem)")
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
    if int(yt.max()) >= K:
        raise ProbeFitError(f"labels go up to {int(yt.max())} but n_classes={K}")
    for p in range(yt.shape[0]):
        present = torch.unique(yt[p][wt[p] > 0])
        if present.numel() < 2:
            raise ProbeFitError(
                f"problem {p}: the training rows hold only class {present.tolist()}; a probe needs two classes "
                "in its training set (check the labels and the split)"
            )
    return yt.to(device), wt.to(device).contiguous(), K


def _balance(y: torch.Tensor, w: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's ``class_weight='balanced'``: w_i *= n_train / (K_present * n_train_class(y_i))."""
    onehot = torch.nn.functional.one_hot(y, K).to(w.dtype)  # [P, n, K]
    counts = torch.einsum("pn,pnk->pk", (w > 0).to(w.dtype), onehot)  # training rows per class
    present = (counts > 0).sum(1, keepdim=True).to(w.dtype)
    total = counts.sum(1, keepdim=True)
    cw = torch.where(counts > 0, total / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    return w * torch.gather(cw, 1, y), counts


_STATS_ROWS_BYTES = 16 << 20  # stats-pass temporaries stay below glibc's mmap threshold (no page faults)


def _stats_pass(feats: FeatureSource, y: torch.Tensor, w: torch.Tensor, K: int, device: torch.device,
                rows: _Rows, extra: torch.Tensor | None = None) -> tuple[FitStats, torch.Tensor | None]:
    """One pass: per-problem training-row mean/std and class means, and ``X^T extra`` for
    weighted row sums (``extra [n, R]`` -> ``[L, R, d]``, float64).

    Everything linear is one matmul per chunk with the class-indicator rows of every problem
    (a problem's row sum is the sum of its class sums; ``extra`` columns that are constant
    within each problem's classes are combined from them too); only the second moments need
    the chunk's squares, once per distinct training-row mask. The chunk is shifted by a
    per-layer reference so ``E[x^2] - E[x]^2`` keeps its precision for features with large
    means; temporaries are chunk-sized and reused."""
    L, d, P = feats.n_layers, feats.d, w.shape[0]
    inc = w > 0  # [P, n]
    masks, inv = torch.unique(inc, dim=0, return_inverse=True)  # problems sharing training rows share scaling
    M = masks.shape[0]
    rep = torch.zeros(M, dtype=torch.long, device=device)
    rep[inv] = torch.arange(P, device=device)  # one problem per distinct mask
    onehot = torch.nn.functional.one_hot(y, K).float() * inc[..., None].float()  # [P, n, K]
    ind = onehot.permute(0, 2, 1).reshape(P * K, -1)  # [P*K, n]
    coef = None  # extra = ind^T @ coef when extra is constant within every problem's classes
    if extra is not None:
        ex = extra.T.float()  # [E, n]
        # value of each extra column on each (problem, class): constant? then combine class sums
        num = ex @ ind.T  # [E, P*K]
        cnt = ind.sum(1).clamp(min=1)  # [P*K]
        own = (torch.arange(ex.shape[0], device=device)[:, None] // (ex.shape[0] // P)
               == torch.arange(P * K, device=device)[None, :] // K)  # column e belongs to problem e // k
        val = num / cnt * own
        recon = val @ ind  # [E, n]
        coef = val if bool(torch.allclose(recon, ex, rtol=1e-6, atol=1e-12)) else None
    A = ind if (extra is None or coef is not None) else torch.cat([ind, extra.T.float()])
    A = A[:, rows.used].contiguous()
    Mrows = masks.float()[:, rows.used].contiguous()
    R = A.shape[0]
    s1 = torch.zeros(L, R, d, device=device, dtype=torch.float64)
    s2 = torch.zeros(L, M, d, device=device, dtype=torch.float64)
    shift = None
    sub = max(16, _STATS_ROWS_BYTES // (4 * L * d))
    buf = None
    if rows.layerwise:  # one gathered layer at a time, centred in place
        for layer, x in rows.gathered_layers():
            sh = x.mean(0, keepdim=True)
            x.sub_(sh)  # the copy the passes use is centred too (see _Rows.gathered_layers)
            rows.shift[layer] = sh.double()
            buf = torch.empty_like(x) if buf is None else buf
            s1[layer] += (A @ x).double()
            s2[layer] += (Mrows @ torch.mul(x, x, out=buf)).double()
        shift = rows.shift  # [L, 1, d]
    for pos, x in ([] if shift is not None else rows.chunks(max_rows=sub)):
        if shift is None:  # a per-layer shift keeps E[x^2] - E[x]^2 accurate for features with large means
            shift = x[:, :64].mean(1, keepdim=True)
            buf = torch.empty(L, min(sub, x.shape[1]), d, device=x.device)
        xc = buf[:, :x.shape[1]] if x.shape[1] <= buf.shape[1] else torch.empty_like(x)
        torch.sub(x, shift, out=xc)
        s1 += torch.matmul(A[:, pos], xc).double()
        s2 += torch.matmul(Mrows[:, pos], xc.square_()).double()
    if not (bool(torch.isfinite(s2).all()) and bool(torch.isfinite(s1).all())):
        bad = int((~(torch.isfinite(s2).all(-1).all(-1) & torch.isfinite(s1).all(-1).all(-1))).nonzero()[0, 0])
        raise FeatureError(f"activations at layer index {bad} contain NaN or inf; fix the activations (a float16 "
                           "overflow?) before probing")
    shift = shift.double()  # [L, 1, d]
    rows.stats_shift = shift
    csum = s1[:, :P * K].view(L, P, K, d)  # shifted class sums
    counts = onehot.sum(1).double()  # [P, K]
    cnt_m = masks.sum(1).double()  # [M]
    m_c = csum[:, rep].sum(2) / cnt_m[None, :, None]  # [L, M, d] shifted means
    var = (s2 / cnt_m[None, :, None] - m_c * m_c).clamp(min=0)
    mean_g = m_c + shift
    std_g = var.sqrt()
    # constant feature (StandardScaler: scale 1): zero variance up to float rounding of its mean
    std_g = torch.where(var <= (1e-6 * mean_g.abs()) ** 2 + 1e-30, torch.ones_like(std_g), std_g)
    mean, std = mean_g[:, inv], std_g[:, inv]
    cm = csum / counts.clamp(min=1)[None, :, :, None] + shift[:, :, None, :]
    stats = FitStats(mean.float(), std.float(), cm.float(), w.sum(1), counts.float())
    if extra is None:
        return stats, None
    ex_all = extra.T.double()[:, rows.used]
    if coef is not None:
        sums = torch.einsum("er,lrd->led", coef.double(), s1[:, :P * K])
    else:
        sums = s1[:, P * K:]
    return stats, sums + shift * ex_all.sum(1)[None, :, None]  # undo the shift


def fit_stats(features: Any, y: torch.Tensor, w: torch.Tensor, K: int, device: torch.device,
              chunk_rows: int | None = None) -> FitStats:
    """One pass: per (layer, problem) training-row mean, std and class means (see :class:`FitStats`)."""
    feats = as_features(features)
    y, w = y.to(device), w.to(device)
    rows = _Rows(feats, (w > 0).any(0), device, chunk_rows or _auto_chunk(device, feats), passes=False)
    return _stats_pass(feats, y, w, K, device, rows)[0]
