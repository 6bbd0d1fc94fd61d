"""Activation patching: batched sweeps that skip what a patch cannot change, and direct path patching.

Protocol (Meng et al. 2022; Wang et al. 2022; Zhang & Nanda 2023, "Towards Best Practices of
Activation Patching"; Heimersheim & Nanda 2024, "How to use and interpret activation patching"):

- **denoising** (``direction="denoise"``): run the *corrupt* input and patch in one activation from
  the *clean* run. A large recovery says the activation is *sufficient* (with the rest of the corrupt
  run) to restore the behaviour.
- **noising** (``direction="noise"``): run the *clean* input and patch in the *corrupt* activation.
  A large drop says the activation is *necessary*.
- Report the logit difference, and normalised ``(patched - corrupt) / (clean - corrupt)``
  (1 = clean behaviour, 0 = corrupt behaviour) for both directions.
- Prefer symmetric token replacement to Gaussian noise (:mod:`circuits.corruption`).

Site kinds and cells:

==============================  =====================  =========================================
``site_kind``                   cells                  TransformerLens reference
==============================  =====================  =========================================
``resid_pre/mid/post``          (layer, pos)           ``get_act_patch_resid_pre`` / ``_mid`` ...
``attn_out``, ``mlp_out``       (layer, pos)           ``get_act_patch_attn_out`` / ``mlp_out``
``z``, ``head_out``             (layer, head)          ``get_act_patch_attn_head_out_all_pos``
``z``, ``head_out`` per pos     (layer, pos, head)     ``get_act_patch_attn_head_out_by_pos``
==============================  =====================  =========================================

``z`` and ``head_out`` patches have the same effect (``head_out[h] = z[h] @ W_O[h]`` is what
the head adds to the residual); both are offered because users name either.

How a sweep is fast (see :mod:`circuits._engine`): every cell becomes the residual entering the
first layer it can change, different from the base run only from position ``p_first`` on; the
patched forwards start at that layer, reuse the base run's keys and values for earlier positions,
batch many cells per forward under a memory budget, and unembed only the read position. Equality
with TransformerLens's per-cell loop is tested to 1e-4 for every kind (tests/circuits/test_patching.py).

Pairs with different token counts (a group name swapped for a longer one): ``align="spans"`` aligns
the two token sequences (:mod:`circuits.alignment`) and patches aligned positions only; equal-length
pairs take the plain path unchanged (tests/circuits/test_alignment.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.results import Provenance, data_hash
from workbench.sites import Site

from ._engine import BaseRun, CellGroup, base_run, mlp_after_attn, run_cells
from .alignment import check_aligned_pair, partner_index
from .corruption import NoiseCorruption, check_pair
from .metrics import as_metric

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["PatchingResult", "patching_sweep", "PATCH_KINDS", "PatchingError", "DirectPathResult",
           "path_patching", "cell_bootstrap"]

PATCH_KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "head_out")


class PatchingError(WorkbenchError, ValueError):
    pass


def cell_bootstrap(values: np.ndarray, clean: np.ndarray, corrupt: np.ndarray, *, n_resamples: int = 1000,
                   confidence: float = 0.95, seed: int = 0, normalized: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over prompts for every cell at once.

    ``values``: ``[cells, B]``. The same prompt resample is used for every cell (and for the clean and
    corrupt baselines), so the normalised ratio ``(mean patched - mean corrupt) / (mean clean - mean
    corrupt)`` is resampled as a ratio of means, the way it is reported. Returns ``(low, high)``.
    """
    C, B = values.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, B, size=(n_resamples, B))
    counts = np.zeros((n_resamples, B))
    np.add.at(counts, (np.arange(n_resamples)[:, None], idx), 1.0)
    w = counts / B  # [R, B]
    m = w @ values.T  # [R, C]
    if normalized:
        mc, mx = w @ clean, w @ corrupt
        denom = (mc - mx)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            m = (m - mx[:, None]) / denom
    alpha = (1 - confidence) / 2
    lo = np.nanquantile(m, alpha, axis=0)
    hi = np.nanquantile(m, 1 - alpha, axis=0)
    return lo, hi


@dataclass
class PatchingResult:
    """Metric values of every patched cell, per prompt.

    Attributes:
        site_kind, direction: what was patched (``"denoise"``: clean into corrupt; ``"noise"``: corrupt
            into clean).
        axes: names of the cell axes (``("layer", "pos")``, ``("layer", "head")`` or
            ``("layer", "pos", "head")``).
        values: ``[*cell_shape, batch]`` metric per cell and prompt (NaN where a cell was not run).
        clean_value, corrupt_value: ``[batch]`` metric on the unpatched clean and corrupt runs.
        metric: the metric's description; ``higher_is_clean`` says its orientation.
        str_tokens: the clean prompt's tokens (labels for the position axis) when the batch is one prompt.
        provenance: model, weights hash, data hash, sites.
    """

    site_kind: str
    direction: str
    axes: tuple[str, ...]
    values: torch.Tensor
    clean_value: torch.Tensor
    corrupt_value: torch.Tensor
    metric: dict
    read_position: int
    str_tokens: list[str] | None = None
    provenance: Provenance = field(default_factory=Provenance)
    seconds: float | None = None
    alignment: tuple | None = None  # per row, a circuits.alignment.SpanAlignment (align="spans", unequal lengths)

    @property
    def n_prompts(self) -> int:
        return int(self.values.shape[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape[:-1])

    @property
    def mean(self) -> torch.Tensor:
        """Mean over prompts of the raw metric, ``[*cell_shape]``."""
        return self.values.mean(-1)

    @property
    def normalized(self) -> torch.Tensor:
        """``(mean patched - mean corrupt) / (mean clean - mean corrupt)`` per cell (1 = clean, 0 = corrupt)."""
        c, x = float(self.clean_value.mean()), float(self.corrupt_value.mean())
        if abs(c - x) < 1e-12:
            raise PatchingError(
                "clean and corrupt runs give the same metric value, so the normalised score is undefined; "
                "check that the corruption changes the answer"
            )
        return (self.mean - x) / (c - x)

    def confidence_intervals(self, normalized: bool = True, n_resamples: int = 1000, confidence: float = 0.95,
                             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Bootstrap-over-prompts CI per cell (``[*cell_shape]`` low and high); needs >= 2 prompts."""
        if self.n_prompts < 2:
            raise PatchingError(
                "a confidence interval over prompts needs at least 2 prompts; pass a batch of clean/corrupt pairs"
            )
        flat = self.values.reshape(-1, self.n_prompts).numpy().astype(np.float64)
        lo, hi = cell_bootstrap(flat, self.clean_value.numpy().astype(np.float64),
                                self.corrupt_value.numpy().astype(np.float64), n_resamples=n_resamples,
                                confidence=confidence, seed=seed, normalized=normalized)
        return torch.from_numpy(lo).reshape(self.shape), torch.from_numpy(hi).reshape(self.shape)

    def top(self, k: int = 10, normalized: bool = True, absolute: bool = True) -> list[tuple[tuple[int, ...], float]]:
        """The ``k`` cells with the largest (absolute) effect: ``[(cell index, value)]``."""
        v = self.normalized if normalized else self.mean - self.corrupt_value.mean()
        flat = v.reshape(-1)
        key = flat.abs() if absolute else flat
        key = torch.nan_to_num(key, nan=-math.inf)
        order = torch.argsort(key, descending=True)[:k]
        return [(tuple(int(i) for i in np.unravel_index(int(o), self.shape)), float(flat[o])) for o in order]

    def to_dataframe(self, ci: bool | None = None, seed: int = 0):
        """One row per cell: the axes, ``mean``, ``normalized`` and (with >= 2 prompts) its bootstrap CI."""
        import pandas as pd

        ci = self.n_prompts >= 2 if ci is None else ci
        idx = np.array(list(np.ndindex(*self.shape)))
        df = pd.DataFrame({a: idx[:, i] for i, a in enumerate(self.axes)})
        df["mean"] = self.mean.reshape(-1).numpy()
        df["normalized"] = self.normalized.reshape(-1).numpy()
        if ci:
            lo, hi = self.confidence_intervals(seed=seed)
            df["ci_low"], df["ci_high"] = lo.reshape(-1).numpy(), hi.reshape(-1).numpy()
        df["n_prompts"] = self.n_prompts
        df["site_kind"], df["direction"], df["metric"] = self.site_kind, self.direction, self.metric.get("name")
        if self.str_tokens is not None and "pos" in self.axes:
            df["token"] = [self.str_tokens[p] for p in df["pos"]]
        if self.alignment is not None and self.n_prompts == 1 and "pos" in self.axes:
            partner = self.alignment[0].partner("corrupt" if self.direction == "denoise" else "clean")
            df["source_pos"] = [-1 if partner[p] is None else partner[p] for p in df["pos"]]
        return df

    def summary(self) -> str:
        """What was patched over how many prompts, the clean and corrupt metric, and the three largest cells."""
        head = (f"{self.direction} patching of {self.site_kind} by {' x '.join(self.axes)} "
                f"({' x '.join(map(str, self.shape))} cells, {self.n_prompts} prompts); {self.metric.get('name')}: "
                f"clean {float(self.clean_value.mean()):.3g}, corrupt {float(self.corrupt_value.mean()):.3g}")
        try:
            top = self.top(3)
        except PatchingError:
            return head + "; clean and corrupt give the same metric, so no effect is normalised"
        cells = "; ".join(f"{_cell_name(self.axes, i)} {v:.2f}" for i, v in top)
        return f"{head}; largest normalised effects (1 = clean): {cells}"


def _cell_name(axes: Sequence[str], idx: Sequence[int]) -> str:
    return " ".join(f"{a} {i}" for a, i in zip(axes, idx))


# ----------------------------------------------------------------------------------------------------------
# Cell construction
# ----------------------------------------------------------------------------------------------------------

def _aligned_source(base: BaseRun, src: BaseRun, partners: torch.Tensor) -> BaseRun:
    """The source run's activations moved onto the base run's positions: position ``p`` holds the source's
    activation at ``partners[b, p]``, or the base run's own where there is no partner (so nothing is patched
    there). Keys and values are not carried (a sweep reads only the base run's cache)."""
    B, T = partners.shape
    valid = partners >= 0
    idx = partners.clamp(min=0)
    rows = torch.arange(B, device=partners.device)[:, None]

    def move(s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(valid.reshape(B, T, *([1] * (b.ndim - 2))), s[rows, idx], b)
    return BaseRun({k: move(v, base.acts[k]) for k, v in src.acts.items()}, [], [], move(src.final, base.final))


def _groups_resid(model, kind: str, base: BaseRun, src: BaseRun, layers: list[int], positions: list[int],
                  cells: list[tuple], read_pos: int) -> list[CellGroup]:
    N = model.n_layers
    groups: dict[int, CellGroup] = {}
    reps: dict[int, tuple[int, torch.Tensor]] = {}
    for L in layers:
        if kind == "resid_pre":
            S, b_in, rep_full = L, base.acts[Site("resid_pre", L)], src.acts[Site("resid_pre", L)]
        else:
            S = L + 1
            b_in = base.entering(S, N)
            if kind in ("resid_post", "resid_mid"):
                # Patching resid_mid at p makes resid_post at p the source run's (the MLP acts per position).
                rep_full = src.entering(S, N)
            else:  # mlp_out
                rep_full = b_in + (src.acts[Site("mlp_out", L)] - base.acts[Site("mlp_out", L)])
        for p in positions:
            cid = len(cells)
            cells.append((L, p))
            if p > read_pos or bool((rep_full[:, p] == b_in[:, p]).all()):
                continue  # cannot change the read logits: left for the caller to fill with the base value
            reps[cid] = (p, rep_full[:, p])
            g = groups.setdefault(S, CellGroup(S, [], [], None))
            g.ids.append(cid)
            g.p_first.append(p)

    def builder(S):
        def build(ids):
            b_in = base.entering(S, N)
            R = b_in.unsqueeze(0).repeat(len(ids), 1, 1, 1)
            for i, cid in enumerate(ids):
                p, row = reps[cid]
                R[i, :, p] = row
            return R
        return build
    for S, g in groups.items():
        g.build = builder(S)
    return list(groups.values())


def _groups_attn(model, kind: str, base: BaseRun, src: BaseRun, layers: list[int], positions: list[int] | None,
                 heads: list[int] | None, cells: list[tuple], read_pos: int) -> list[CellGroup]:
    """attn_out by (layer, pos); z/head_out by (layer, head) or (layer, pos, head)."""
    N = model.n_layers
    parallel = model.facts.parallel_attn_mlp
    groups: dict[int, CellGroup] = {}
    specs_by_cell: dict[int, tuple] = {}
    T = base.final.shape[1]
    per_layer: dict[int, tuple] = {}
    for L in layers:
        S = L + 1
        if kind == "attn_out":
            full = src.acts[Site("attn_out", L)] - base.acts[Site("attn_out", L)]
            per_layer[L] = (full, None)
            specs = [((L, p), p, None) for p in positions]
            nz = (full != 0).reshape(full.shape[0], T, -1).any(-1).any(0)  # [T]
        else:
            dz = src.acts[Site("z", L)] - base.acts[Site("z", L)]  # [B, T, H, dh]
            per_layer[L] = (dz, model.W_O(L).detach().to(dz.dtype))
            nzh = (dz != 0).any(-1).any(0)  # [T, H]
            if positions is None:
                specs = [((L, h), None, h) for h in heads]
            else:
                specs = [((L, p, h), p, h) for p in positions for h in heads]
        for key, p, h in specs:
            cid = len(cells)
            cells.append(key)
            if h is None:
                pf = p if bool(nz[p]) else None
            elif p is not None:
                pf = p if bool(nzh[p, h]) else None
            else:
                w = torch.nonzero(nzh[:, h])
                pf = int(w[0]) if len(w) else None
            if pf is None or pf > read_pos:
                continue
            specs_by_cell[cid] = (L, p, h)
            g = groups.setdefault(S, CellGroup(S, [], [], None))
            g.ids.append(cid)
            g.p_first.append(pf)

    def delta(cid: int) -> torch.Tensor:
        L, p, h = specs_by_cell[cid]
        x, W_O = per_layer[L]
        if h is None:
            d = torch.zeros_like(x)
            d[:, p] = x[:, p]
            return d
        zd = x[:, :, h]
        if p is not None:
            keep = torch.zeros_like(zd)
            keep[:, p] = zd[:, p]
            zd = keep
        return zd @ W_O[h]

    def builder(L):
        S = L + 1

        def build(ids):
            d = torch.stack([delta(c) for c in ids])  # [n, B, T, dm]
            b_post = base.entering(S, N).unsqueeze(0)
            if parallel:
                new = b_post + d
            else:
                mid = base.acts[Site("resid_mid", L)].unsqueeze(0) + d
                n, B = d.shape[:2]
                new = mlp_after_attn(model, L, mid.reshape(n * B, T, -1)).reshape(mid.shape)
            changed = (d != 0).any(-1, keepdim=True)
            return torch.where(changed, new, b_post.expand_as(new))
        return build
    for S, g in groups.items():
        g.build = builder(S - 1)
    return list(groups.values())


def _sort_group(g: CellGroup) -> CellGroup:
    order = sorted(range(len(g.ids)), key=lambda i: g.p_first[i])
    return CellGroup(g.start, [g.ids[i] for i in order], [g.p_first[i] for i in order], g.build)


def _resolve_list(x, n: int, what: str) -> list[int]:
    if x is None:
        return list(range(n))
    items = [x] if isinstance(x, int) else list(x)
    out = []
    for i in items:
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise PatchingError(f"{what} {i} is out of range (0..{n - 1})")
        out.append(j)
    return out


def patching_sweep(model: Model, clean: Any, corrupt: Any, site_kind: str = "resid_pre", *, metric: Any,
                   direction: str = "denoise", per_position: bool = False, layers: Sequence[int] | None = None,
                   positions: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                   read_position: int = -1, memory_mb: float = 1024.0, overhead_tokens: int = 16,
                   max_cells_per_forward: int | None = None, progress: bool = False, align: str = "exact",
                   **tokenize_kw: Any) -> PatchingResult:
    """Patch every cell of ``site_kind`` and measure ``metric`` at ``read_position``.

    Args:
        model: a :class:`workbench.models.HookedModel` (either backend: the fast path calls the HF modules).
        clean, corrupt: prompts, or :class:`Tokens` of the same shape (no padding). ``corrupt`` may also be
            a :class:`circuits.corruption.NoiseCorruption` of the clean tokens (Gaussian noise on embeddings).
            With ``align="spans"`` the clean and corrupt prompts may differ in token count.
        site_kind: one of :data:`PATCH_KINDS`.
        metric: a :class:`circuits.metrics.PatchMetric` (``LogitDiff``, ``TargetProb``, ``KLFromClean``...) or
            a callable ``f(logits[n, vocab], rows[n]) -> [n]``.
        direction: ``"denoise"`` (clean -> corrupt run) or ``"noise"`` (corrupt -> clean run).
        per_position: for ``z``/``head_out``, patch each (layer, pos, head) instead of each head at all positions.
        layers, positions, heads: restrict the cells (default: all).
        read_position: the token whose logits the metric reads (default the last).
        memory_mb: activation budget of one batched forward (sets the cells per forward).
        overhead_tokens: the per-forward overhead in token-equivalents used to choose chunks.
        progress: show a tqdm bar over forwards.
        align: ``"exact"`` (position ``p`` patches position ``p``; the pair must have the same token count)
            or ``"spans"``: pairs of different token counts are aligned by :mod:`circuits.alignment`
            (identical runs one to one, a replaced span from its end, unmatched tokens never patched); the
            position axis is then the base run's (corrupt when denoising, clean when noising), per-position
            cells without a partner are NaN, ``read_position`` counts from the end in each run and must be
            aligned, and ``PatchingResult.alignment`` holds each row's alignment. A pair with equal token
            counts takes the ``"exact"`` path unchanged (identical results).

    Returns:
        :class:`PatchingResult` with per-prompt values; ``.normalized`` and ``.to_dataframe()`` report it.
    """
    import time

    t0 = time.time()
    if site_kind not in PATCH_KINDS:
        raise PatchingError(f"site_kind must be one of {PATCH_KINDS}, got {site_kind!r}")
    if direction not in ("denoise", "noise"):
        raise PatchingError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    if site_kind == "resid_mid" and model.facts.parallel_attn_mlp:
        raise PatchingError(f"{model.name} has a parallel residual (no resid_mid); patch resid_pre, attn_out or mlp_out")
    if per_position and site_kind not in ("z", "head_out"):
        raise PatchingError("per_position applies to head kinds (z, head_out); residual kinds are always per position")
    if align not in ("exact", "spans"):
        raise PatchingError(f"align must be 'exact' or 'spans', got {align!r}")
    m = as_metric(metric)
    noise = None
    alignments = None
    if isinstance(corrupt, NoiseCorruption):
        noise = corrupt
        ct = model.tokenize(clean, **tokenize_kw)
        xt = ct
        if noise.noise.shape[:2] != ct.shape:
            raise PatchingError(f"the noise corruption covers {tuple(noise.noise.shape[:2])}, the clean batch is {ct.shape}")
        check_pair(model, ct, ct)
    elif align == "spans":
        ct, xt, alignments = check_aligned_pair(model, clean, corrupt, **tokenize_kw)
        if all(a.identity for a in alignments):
            alignments = None  # equal token counts: plain patching, today's code path
            ct, xt = check_pair(model, ct, xt)
    else:
        ct, xt = check_pair(model, clean, corrupt, **tokenize_kw)
    B, T = ct.shape
    N = model.n_layers
    rp = read_position + T if read_position < 0 else read_position
    rp_clean = rp_corrupt = rp
    if alignments is not None:
        base_side = "corrupt" if direction == "denoise" else "clean"
        T = xt.shape[1] if base_side == "corrupt" else ct.shape[1]
        if read_position >= 0:
            raise PatchingError("with align='spans' and prompts of different lengths, give read_position from the end "
                                f"(-1 = the last token), not {read_position}")
        rp_clean, rp_corrupt = ct.shape[1] + read_position, xt.shape[1] + read_position
        rp = rp_corrupt if base_side == "corrupt" else rp_clean
        for i, a in enumerate(alignments):
            if min(rp_clean, rp_corrupt) < 0 or (rp_clean, rp_corrupt) not in a.pairs:
                raise PatchingError(
                    f"pair {i}: the read position {read_position} is not aligned between the clean and corrupt prompts "
                    "(it falls in a span that differs); end both prompts with the same tokens, e.g. the same question")
    if not 0 <= rp < T:
        raise PatchingError(f"read_position {read_position} is out of range for {T} tokens")
    kinds = {"resid_pre": ["resid_pre"], "resid_mid": ["resid_pre"], "resid_post": ["resid_pre"],
             "attn_out": ["attn_out", "resid_mid"], "mlp_out": ["mlp_out"], "z": ["z", "resid_mid"],
             "head_out": ["z", "resid_mid"]}[site_kind]
    offset_clean = None
    offset_corrupt = noise.noise if noise is not None else None
    clean_run = base_run(model, ct.input_ids, kinds, embed_offset=offset_clean)
    corrupt_run = base_run(model, xt.input_ids, kinds, embed_offset=offset_corrupt)
    with torch.inference_mode():
        clean_logits = model.unembed(clean_run.final[:, rp_clean])
        corrupt_logits = model.unembed(corrupt_run.final[:, rp_corrupt])
    m.prepare(clean_logits, corrupt_logits)
    rows = torch.arange(B, device=clean_logits.device)
    with torch.inference_mode():
        clean_v = m(clean_logits, rows).float().cpu()
        corrupt_v = m(corrupt_logits, rows).float().cpu()
    base, src = (corrupt_run, clean_run) if direction == "denoise" else (clean_run, corrupt_run)
    base_v = corrupt_v if direction == "denoise" else clean_v
    partners = None
    if alignments is not None:
        partners = partner_index(alignments, base_side, device=base.final.device)
        src = _aligned_source(base, src, partners)
    L_list = _resolve_list(layers, N, "layer")
    cells: list[tuple] = []
    if site_kind in ("z", "head_out"):
        H = _resolve_list(heads, model.facts.n_heads, "head")
        P = _resolve_list(positions, T, "position") if per_position else None
        groups = _groups_attn(model, site_kind, base, src, L_list, P, H, cells, rp)
        if per_position:
            axes, shape = ("layer", "pos", "head"), (len(L_list), len(P), len(H))
        else:
            axes, shape = ("layer", "head"), (len(L_list), len(H))
    else:
        if heads is not None:
            raise PatchingError(f"heads= applies to z/head_out, not {site_kind}")
        P = _resolve_list(positions, T, "position")
        if site_kind == "attn_out":
            groups = _groups_attn(model, site_kind, base, src, L_list, P, None, cells, rp)
        else:
            groups = _groups_resid(model, site_kind, base, src, L_list, P, cells, rp)
        axes, shape = ("layer", "pos"), (len(L_list), len(P))
    groups = [_sort_group(g) for g in groups]
    f = model.facts
    per_token_bytes = 4 * (3 * f.d_mlp + 8 * f.d_model + 2 * f.n_heads * T)
    max_tokens = max(T, int(memory_mb * 2**20 / per_token_bytes))
    vals = run_cells(model, base, groups, rp, m, len(cells), max_tokens=max_tokens,
                     overhead_tokens=overhead_tokens, max_rows=max_cells_per_forward, progress=progress,
                     desc=f"patch {site_kind} ({direction})")
    vals = vals.clone()
    unrun = torch.isnan(vals).all(1)
    vals[unrun] = base_v  # cells that cannot change the read logits keep the base run's value exactly
    values = vals.reshape(*shape, B)
    if partners is not None and "pos" in axes:
        # per-position cells at a base position with no partner patched nothing: not a measurement
        unmatched = (partners.cpu()[:, P] < 0).T  # [len(P), B]; axes are (layer, pos[, head]) + prompts
        mask = unmatched.reshape(1, len(P), *([1] * (values.ndim - 3)), B)
        values = values.masked_fill(mask.expand_as(values), float("nan"))
    if alignments is not None:
        str_tokens = model.to_str_tokens(xt if base_side == "corrupt" else ct) if B == 1 else None
    else:
        str_tokens = model.to_str_tokens(ct) if B == 1 else None
    sites = sorted({f"{site_kind}.{L}" for L in L_list})
    prov = model.provenance(
        data_hash=data_hash(ct.input_ids, xt.input_ids, None if noise is None else noise.noise), sites=tuple(sites),
        seed=None if noise is None else noise.seed,
        extra={"method": "activation_patching", "direction": direction, "metric": m.describe(),
               "read_position": rp, "per_position": per_position, "positions": P if site_kind not in ("z", "head_out") or per_position else "all",
               "heads": heads, "corruption": "embedding_noise" if noise is not None else "tokens",
               **({"align": "spans", "alignment": [a.to_dict() for a in alignments]} if alignments is not None else {})})
    return PatchingResult(site_kind, direction, axes, values, clean_v, corrupt_v, m.describe() | {
        "higher_is_clean": getattr(m, "higher_is_clean", True)}, rp, str_tokens, prov, time.time() - t0,
        tuple(alignments) if alignments is not None else None)


# ----------------------------------------------------------------------------------------------------------
# Direct path patching
# ----------------------------------------------------------------------------------------------------------

@dataclass
class DirectPathResult:
    """Direct-path patching from one source head.

    ``to_heads``: ``[n_layers, n_heads]`` metric with only the path source -> (layer, head)'s ``component``
    input patched (NaN for layers <= the source layer). ``to_logits``: the metric with only the direct path
    source -> logits patched (the source's output change added to the final residual, nothing in between
    recomputed). ``clean_value``/``corrupt_value`` as in :class:`PatchingResult`.
    """

    source: tuple[int, int]
    component: str
    direction: str
    to_heads: torch.Tensor
    to_logits: torch.Tensor
    clean_value: torch.Tensor
    corrupt_value: torch.Tensor
    metric: dict
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def normalized_to_heads(self) -> torch.Tensor:
        c, x = float(self.clean_value.mean()), float(self.corrupt_value.mean())
        return (self.to_heads.mean(-1) - x) / (c - x)

    def to_dataframe(self):
        import pandas as pd

        c, x = float(self.clean_value.mean()), float(self.corrupt_value.mean())
        rows = []
        nL, nH = self.to_heads.shape[:2]
        for L in range(nL):
            for h in range(nH):
                v = float(self.to_heads[L, h].mean())
                if not math.isnan(v):
                    rows.append({"src_layer": self.source[0], "src_head": self.source[1], "dst": f"{self.component}.{L}.h{h}",
                                 "dst_layer": L, "dst_head": h, "mean": v, "normalized": (v - x) / (c - x)})
        v = float(self.to_logits.mean())
        rows.append({"src_layer": self.source[0], "src_head": self.source[1], "dst": "logits", "dst_layer": nL,
                     "dst_head": -1, "mean": v, "normalized": (v - x) / (c - x)})
        df = pd.DataFrame(rows)
        df["component"], df["direction"], df["metric"] = self.component, self.direction, self.metric.get("name")
        return df

    def summary(self) -> str:
        """The source head, its direct effect on the logits and the receiving heads it drives most."""
        c, x = float(self.clean_value.mean()), float(self.corrupt_value.mean())
        src = f"L{self.source[0]}H{self.source[1]}"
        if abs(c - x) < 1e-12:
            return f"{self.direction} path patching from {src}: clean and corrupt give the same metric"
        logits = (float(self.to_logits.mean()) - x) / (c - x)
        nh = self.normalized_to_heads
        flat = torch.nan_to_num(nh.reshape(-1), nan=-math.inf)
        order = torch.argsort(flat.abs(), descending=True)[:3]
        H = nh.shape[1]
        dst = "; ".join(f"L{int(o) // H}H{int(o) % H} {float(flat[o]):.2f}" for o in order if math.isfinite(flat[o]))
        return (f"{self.direction} path patching from {src} ({self.metric.get('name')}, normalised, 1 = clean): "
                f"to the logits {logits:.2f}; to later heads' {self.component}: {dst or 'none'}")


def _head_input(model: Model, layer: int, resid: torch.Tensor, component: str) -> torch.Tensor:
    """The canonical q/k/v (``[B, T, heads, d_head]``, before rotary) that layer ``layer`` computes from ``resid``."""
    arch, f = model.arch, model.facts
    ln1 = model.layer_module(layer, "ln1")
    x = ln1(resid) if ln1 is not None else resid
    if arch.qkv == "separate":
        mod = model.layer_module(layer, component)
        n = f.n_heads if component == "q" else f.n_kv_heads
        out = mod(x)
        return out.reshape(*out.shape[:-1], n, f.d_head)
    q, k, v = arch.split_qkv(model.layer_module(layer, "q")(x), f.n_heads, f.n_kv_heads, f.d_head)
    return {"q": q, "k": k, "v": v}[component]


@torch.inference_mode()
def path_patching(model: Model, clean: Any, corrupt: Any, source: tuple[int, int], *, metric: Any,
                  component: str = "q", direction: str = "denoise", read_position: int = -1,
                  batch_size: int = 16, **tokenize_kw: Any) -> DirectPathResult:
    """Direct path patching (Wang et al. 2022, IOI; Goldowsky-Dill et al. 2023): the edge from one head.

    The source head's output change ``delta = (z_src - z_base)[h] @ W_O[h]`` (src = clean when denoising)
    is added only to the residual that the destination head reads for its ``component`` (``q``, ``k`` or
    ``v``): ``component = W(ln1(resid_pre + delta))``, while every other reader sees the base run. For
    ``k``/``v`` under grouped-query attention the destination is a KV head (``n_kv_heads`` of them), which
    feeds every query head of its group. ``to_logits`` adds ``delta`` to the final residual only.
    All destinations of one source run as one batch of forwards (one row per destination).
    """
    from workbench.interventions import custom

    if component not in ("q", "k", "v"):
        raise PatchingError(f"component must be 'q', 'k' or 'v', got {component!r}")
    m = as_metric(metric)
    ct, xt = check_pair(model, clean, corrupt, **tokenize_kw)
    B, T = ct.shape
    N, H = model.n_layers, model.facts.n_heads
    Ls, hs = source
    rp = read_position + T if read_position < 0 else read_position
    clean_run = base_run(model, ct.input_ids, ["z"])
    corrupt_run = base_run(model, xt.input_ids, ["z"])
    base, src = (corrupt_run, clean_run) if direction == "denoise" else (clean_run, corrupt_run)
    base_t = xt if direction == "denoise" else ct
    cl = model.unembed(clean_run.final[:, rp])
    cx = model.unembed(corrupt_run.final[:, rp])
    m.prepare(cl, cx)
    rows = torch.arange(B)
    clean_v, corrupt_v = m(cl, rows).float().cpu(), m(cx, rows).float().cpu()
    W_O = model.W_O(Ls)[hs]
    delta = (src.acts[Site("z", Ls)][:, :, hs] - base.acts[Site("z", Ls)][:, :, hs]) @ W_O  # [B, T, d]
    to_logits = m(model.unembed(base.final[:, rp] + delta[:, rp]), rows).float().cpu()
    n_dst = model.facts.n_kv_heads if component in ("k", "v") else H
    to_heads = torch.full((N, n_dst, B), float("nan"))
    dests = [(L, h) for L in range(Ls + 1, N) for h in range(n_dst)]
    new_inputs = {L: _head_input(model, L, base.acts[Site("resid_pre", L)] + delta, component) for L in range(Ls + 1, N)}
    for i in range(0, len(dests), batch_size):
        chunk = dests[i:i + batch_size]
        n = len(chunk)
        ids = base_t.input_ids.repeat(n, 1)
        ivs = []
        for L in sorted({d[0] for d in chunk}):
            sel = torch.zeros(n * B, n_dst, dtype=torch.bool)
            for j, (Lj, hj) in enumerate(chunk):
                if Lj == L:
                    sel[j * B:(j + 1) * B, hj] = True
            val = new_inputs[L].repeat(n, 1, 1, 1)

            def fn(x, mask, sel=sel, val=val):
                s = sel.to(x.device)[:, None, :, None]
                return torch.where(s, val.to(x.dtype), x)
            ivs.append(custom(f"{component}.{L}", fn))
        logits = model.forward(ids, interventions=ivs)[:, rp]
        vals = m(logits, rows.repeat(n)).float().cpu().reshape(n, B)
        for j, (L, h) in enumerate(chunk):
            to_heads[L, h] = vals[j]
    prov = model.provenance(data_hash=data_hash(ct.input_ids, xt.input_ids), sites=(f"head_out.{Ls}.h{hs}",),
                            extra={"method": "direct_path_patching", "component": component, "direction": direction,
                                   "metric": m.describe()})
    return DirectPathResult((Ls, hs), component, direction, to_heads, to_logits, clean_v, corrupt_v, m.describe(), prov)
