"""Attribution patching (AtP) and its AtP* corrections, with an agreement report against exact patching.

AtP (Nanda 2023, "Attribution Patching"; Syed et al. 2023) estimates the effect of patching node ``n``
by a first-order Taylor expansion around the base run:

    c_AtP(n) = (a_src(n) - a_base(n)) . dM/da(n) |_base

(denoising: base = corrupt, src = clean). One forward on the source input, one forward and one
backward on the base input give the estimate for *every* node at once (:meth:`HookedModel.gradients`).

AtP* (Kramár et al. 2024, "AtP*: An efficient and scalable method for localizing LLM behaviour to
components") adds two corrections, both options here:

- **QK fix** (``qk_fix=True``, nodes ``q``/``k``): the attention softmax saturates, so for query and key
  nodes the pattern under the patch is recomputed exactly, ``A' = softmax(q' k'^T / sqrt(d) + mask)``,
  and only the pattern's effect is linearised: ``c(n) = sum (A' - A) . dM/dA``. For a key node of a
  grouped-query model every query head of its group is included.
- **GradDrop** (``graddrop=True``): to expose cancellation through later layers, the gradient is recomputed
  ``L`` times, each time with the gradient through layer ``l``'s residual writes (its attention and MLP
  outputs) stopped; ``c_GD(n) = 1/(L-1) sum_l |c_l(n)|`` ranks nodes by magnitude. It costs ``L`` more
  forward+backward passes.

:func:`attribution_agreement` compares an attribution with exact patching over the same nodes:
Spearman's rho (bootstrap CI and permutation p from :mod:`workbench.stats`) and top-k recall (bootstrap
over prompts).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from workbench.interventions import custom
from workbench.results import Provenance, data_hash
from workbench.sites import Site
from workbench.stats import Estimate, spearman

from .corruption import check_pair
from .metrics import as_metric
from .patching import PatchingResult

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["AttributionResult", "attribution_patching", "AgreementReport", "attribution_agreement", "NODE_KINDS"]

NODE_KINDS = ("head", "head_pos", "attn_out", "mlp_out", "resid_pre", "resid_post", "q", "k")


@dataclass
class AttributionResult:
    """Attribution estimates per node and prompt: ``values [*node_shape, batch]`` (estimated metric change).

    ``axes`` name the node axes (``("layer", "head")``, ``("layer", "pos", "head")``, ``("layer", "pos")``).
    ``base_value`` is the metric on the base run per prompt. ``method`` records the options (AtP, QK fix,
    GradDrop). ``values`` estimate ``patched - base``; :attr:`estimated_patched` adds the base back.
    """

    node_kind: str
    direction: str
    axes: tuple[str, ...]
    values: torch.Tensor
    base_value: torch.Tensor
    clean_value: torch.Tensor
    corrupt_value: torch.Tensor
    method: dict
    provenance: Provenance = field(default_factory=Provenance)
    seconds: float | None = None

    @property
    def mean(self) -> torch.Tensor:
        return self.values.mean(-1)

    @property
    def estimated_patched(self) -> torch.Tensor:
        return self.values + self.base_value

    def to_dataframe(self):
        import pandas as pd

        shape = tuple(self.values.shape[:-1])
        idx = np.array(list(np.ndindex(*shape)))
        df = pd.DataFrame({a: idx[:, i] for i, a in enumerate(self.axes)})
        df["attribution"] = self.mean.reshape(-1).numpy()
        B = self.values.shape[-1]
        df["std"] = self.values.reshape(-1, B).std(-1).numpy() if B > 1 else float("nan")
        df["n_prompts"] = B
        df["node_kind"], df["direction"] = self.node_kind, self.direction
        df["method"] = self.method.get("name")
        return df

    def summary(self) -> str:
        """Method, nodes, prompts and the three nodes with the largest estimated effect."""
        m = self.mean
        flat = m.reshape(-1)
        order = torch.argsort(flat.abs(), descending=True)[:3]
        shape = tuple(m.shape)
        cells = "; ".join(" ".join(f"{a} {i}" for a, i in zip(self.axes, np.unravel_index(int(o), shape)))
                          + f" {float(flat[o]):.3g}" for o in order)
        return (f"{self.method.get('name', 'attribution')} ({self.direction}) over {self.node_kind} by "
                f"{' x '.join(self.axes)} ({flat.numel()} nodes, {self.values.shape[-1]} prompts); largest estimated "
                f"metric changes: {cells}")


def _sum_metric(m, rp: int):
    def f(logits, tokens):
        B = logits.shape[0]
        return m(logits[:, rp], torch.arange(B, device=logits.device)).sum()
    return f


def _rotary(model: Model, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Apply the model's rotary embedding to canonical q or k ``[B, T, heads, d_head]``."""
    pe = model.rotary_embeddings(x, pos)
    if pe is None:
        return x
    from workbench.models.compat import apply_rotary

    cos, sin = pe
    return apply_rotary(x, cos, sin)


def _pattern_from(model: Model, q: torch.Tensor, k: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Causal softmax pattern ``[B, H, T, T]`` from canonical (pre-rotary) q ``[B,T,H,dh]`` and k ``[B,T,KV,dh]``."""
    f = model.facts
    pos = pos.to(q.device)
    qr, kr = _rotary(model, q, pos), _rotary(model, k, pos)
    group = f.n_heads // f.n_kv_heads
    kr = kr.repeat_interleave(group, dim=2)
    scale = getattr(model.layer_module(0, "attn"), "scaling", None)
    if scale is None:
        scale = 1.0 / math.sqrt(f.d_head)
    s = torch.einsum("bqhd,bkhd->bhqk", qr.float(), kr.float()) * scale
    T = s.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=s.device).tril()
    return s.masked_fill(~causal, float("-inf")).softmax(-1)


def _site_for(kind: str, L: int) -> Site:
    return {"head": Site("head_out", L), "head_pos": Site("head_out", L), "attn_out": Site("attn_out", L),
            "mlp_out": Site("mlp_out", L), "resid_pre": Site("resid_pre", L), "resid_post": Site("resid_post", L),
            "q": Site("q", L), "k": Site("k", L)}[kind]


def _node_values(kind: str, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[*node, B]`` per-node estimates of one layer from ``delta`` and ``grad`` (canonical shapes)."""
    prod = (delta.float() * grad.float()).sum(-1)  # [B, T] or [B, T, heads]
    if kind in ("head", "q", "k"):
        return prod.sum(1).T  # [heads, B]
    if kind == "head_pos":
        return prod.permute(1, 2, 0)  # [T, heads, B]
    return prod.T  # [T, B]


def attribution_patching(model: Model, clean: Any, corrupt: Any, node_kind: str = "head", *, metric: Any,
                         direction: str = "denoise", read_position: int = -1, qk_fix: bool = False,
                         graddrop: bool = False, layers: Sequence[int] | None = None, progress: bool = False,
                         **tokenize_kw: Any) -> AttributionResult:
    """Attribution-patching estimates for every node of ``node_kind`` (see the module docstring).

    Args:
        node_kind: ``head`` (each head over all positions, via ``head_out``), ``head_pos`` (each head at each
            position), ``attn_out``/``mlp_out``/``resid_pre``/``resid_post`` by (layer, pos), ``q``/``k``
            (query heads / KV heads over all positions; ``qk_fix`` applies to these).
        metric: as for :func:`circuits.patching_sweep` (a per-prompt metric; prompts are summed for the backward).
        qk_fix: AtP*'s exact softmax recomputation for ``q``/``k`` nodes.
        graddrop: AtP*'s GradDrop (``n_layers`` extra forward+backward passes).
    """
    t0 = time.time()
    if node_kind not in NODE_KINDS:
        raise ValueError(f"node_kind must be one of {NODE_KINDS}, got {node_kind!r}")
    if qk_fix and node_kind not in ("q", "k"):
        raise ValueError("qk_fix applies to q/k nodes (query and key patches); for heads' outputs AtP is linear in z")
    plain = {"q/k norms", "attention soft-capping", "sliding-window/local attention layers"} & set(model.arch.quirks)
    if qk_fix and (plain or model.arch.family == "gptj"):
        why = ", ".join(sorted(plain)) or "interleaved rotary embeddings"
        raise NotImplementedError(f"the QK fix recomputes softmax patterns from q and k with plain causal attention; "
                                  f"{model.name} ({model.arch.family}) has {why}: use qk_fix=False or exact patching")
    m = as_metric(metric)
    ct, xt = check_pair(model, clean, corrupt, **tokenize_kw)
    B, T = ct.shape
    N = model.n_layers
    rp = read_position + T if read_position < 0 else read_position
    base_t, src_t = (xt, ct) if direction == "denoise" else (ct, xt)
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    L_list = list(range(N)) if layers is None else [int(x) for x in layers]
    sites = [_site_for(node_kind, L) for L in L_list]
    extra = [Site("pattern", L) for L in L_list] if qk_fix else []
    if qk_fix:
        sites_qk = [Site(s, L) for L in L_list for s in ("q", "k")]
    else:
        sites_qk = []
    with torch.inference_mode():
        cl = model.forward(ct, logits="last").float()
        xl = model.forward(xt, logits="last").float()
    m.prepare(cl, xl)
    rows = torch.arange(B)
    clean_v, corrupt_v = m(cl, rows).float().cpu(), m(xl, rows).float().cpu()
    base_v = corrupt_v if direction == "denoise" else clean_v
    src_sites = list(dict.fromkeys(sites + sites_qk))
    _, src_cache = model.run_with_cache(src_t, src_sites, logits=None)
    metric_fn = _sum_metric(m, rp)
    grad_sites = list(dict.fromkeys(sites + extra + sites_qk))
    gr = model.gradients(base_t, grad_sites, metric_fn)
    pos = torch.arange(T, device=model.device).expand(B, T)

    def estimates(grads) -> list[torch.Tensor]:
        out = []
        for L, s in zip(L_list, sites):
            if qk_fix:
                q_b, k_b = gr.activations[Site("q", L)], gr.activations[Site("k", L)]
                q_s, k_s = src_cache[Site("q", L)], src_cache[Site("k", L)]
                A = _pattern_from(model, q_b, k_b, pos)
                gA = grads[Site("pattern", L)].float()
                f = model.facts
                n = f.n_heads if node_kind == "q" else f.n_kv_heads
                group = f.n_heads // f.n_kv_heads
                vals = torch.zeros(n, B)
                for h in range(n):
                    if node_kind == "q":
                        q2 = q_b.clone()
                        q2[:, :, h] = q_s[:, :, h]
                        A2 = _pattern_from(model, q2, k_b, pos)
                        vals[h] = ((A2 - A) * gA)[:, h].sum((-1, -2)).cpu()
                    else:
                        k2 = k_b.clone()
                        k2[:, :, h] = k_s[:, :, h]
                        A2 = _pattern_from(model, q_b, k2, pos)
                        hs = list(range(h * group, (h + 1) * group))
                        vals[h] = ((A2 - A) * gA)[:, hs].sum((1, 2, 3)).cpu()
                out.append(vals)
            else:
                delta = src_cache[s] - gr.activations[s]
                out.append(_node_values(node_kind, delta, grads[s]).cpu())
        return out

    if graddrop:
        acc = None
        it = range(N)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="GradDrop")
        for drop in it:
            stop = [custom(f"{k}.{drop}", lambda x, mask: x.detach(), label="graddrop") for k in ("attn_out", "mlp_out")]
            g2 = model.gradients(base_t, grad_sites, metric_fn, interventions=stop)
            est = [e.abs() for e in estimates(g2.grads)]
            acc = est if acc is None else [a + e for a, e in zip(acc, est)]
        per_layer = [a / max(1, N - 1) for a in acc]
    else:
        per_layer = estimates(gr.grads)
    values = torch.stack(per_layer)  # [L, *node, B]
    if node_kind in ("head", "q", "k"):
        axes = ("layer", "head")
    elif node_kind == "head_pos":
        axes = ("layer", "pos", "head")
    else:
        axes = ("layer", "pos")
    name = "AtP" + ("* (QK fix)" if qk_fix else "") + (" + GradDrop" if graddrop else "")
    prov = model.provenance(data_hash=data_hash(ct.input_ids, xt.input_ids), sites=tuple(s.name for s in grad_sites),
                            extra={"method": "attribution_patching", "variant": name, "direction": direction,
                                   "metric": m.describe(), "read_position": rp})
    return AttributionResult(node_kind, direction, axes, values.detach(), base_v, clean_v, corrupt_v,
                             {"name": name, "qk_fix": qk_fix, "graddrop": graddrop}, prov, time.time() - t0)


@dataclass
class AgreementReport:
    """Agreement of attribution estimates with exact patching over the same nodes.

    ``attribution`` and ``exact`` are the two results compared (for the plot).
    ``spearman``: rank correlation of the per-node mean effects (``exact patched - base`` vs the estimate),
    CI by bootstrap over nodes, permutation p-value. ``recall_at_k``: share of the ``k`` nodes with the largest
    |exact effect| that are among the ``k`` largest |estimates|, CI by bootstrap over prompts (both rankings
    recomputed on each resample). ``n_nodes``, ``n_prompts``.
    """

    spearman: Estimate
    recall_at_k: Estimate
    k: int
    n_nodes: int
    n_prompts: int
    exact_top: list[tuple[int, ...]]
    attribution_top: list[tuple[int, ...]]
    label: str = ""
    provenance: Provenance = field(default_factory=Provenance)
    #: the two results compared (kept for the plot, :func:`circuits.plots.plot_attribution_agreement`)
    attribution: AttributionResult | None = field(default=None, repr=False, compare=False)
    exact: PatchingResult | None = field(default=None, repr=False, compare=False)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([
            {"label": self.label, "statistic": "spearman", "value": self.spearman.value, "ci_low": self.spearman.ci_low,
             "ci_high": self.spearman.ci_high, "p_value": self.spearman.p_value, "n": self.spearman.n},
            {"label": self.label, "statistic": f"top{self.k}_recall", "value": self.recall_at_k.value,
             "ci_low": self.recall_at_k.ci_low, "ci_high": self.recall_at_k.ci_high, "p_value": None,
             "n": self.recall_at_k.n}])

    def summary(self) -> str:
        s, r = self.spearman, self.recall_at_k
        return (f"{self.label}: Spearman {s.value:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}] (n={s.n} nodes); "
                f"top-{self.k} recall {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] ({self.n_prompts} prompts)")


def _topk(v: np.ndarray, k: int) -> set:
    return set(np.argsort(-np.abs(v))[:k].tolist())


def attribution_agreement(attribution: AttributionResult, exact: PatchingResult, *, k: int = 10, seed: int = 0,
                          n_resamples: int = 1000, label: str = "") -> AgreementReport:
    """Spearman and top-``k`` recall of ``attribution`` against ``exact`` patching over the same nodes."""
    if tuple(attribution.values.shape) != tuple(exact.values.shape):
        raise ValueError(f"attribution nodes {tuple(attribution.values.shape)} and exact cells "
                         f"{tuple(exact.values.shape)} differ: patch the same nodes (e.g. node_kind='head' with "
                         "site_kind='z')")
    if attribution.direction != exact.direction:
        raise ValueError(f"directions differ: attribution {attribution.direction}, exact {exact.direction}")
    B = exact.values.shape[-1]
    base = exact.corrupt_value if exact.direction == "denoise" else exact.clean_value
    ex = (exact.values - base).reshape(-1, B).double().numpy()  # [nodes, B]
    at = attribution.values.reshape(-1, B).double().numpy()
    n_nodes = ex.shape[0]
    k = min(k, n_nodes)
    rho = spearman(at.mean(1), ex.mean(1), seed=seed)
    rec = len(_topk(ex.mean(1), k) & _topk(at.mean(1), k)) / k
    if B >= 2:
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(n_resamples):
            i = rng.integers(0, B, B)
            vals.append(len(_topk(ex[:, i].mean(1), k) & _topk(at[:, i].mean(1), k)) / k)
        lo, hi = np.quantile(vals, [0.025, 0.975])
        rec_e = Estimate(rec, float(min(lo, rec)), float(max(hi, rec)), n=B, method="bootstrap percentile over prompts",
                         seed=seed, statistic=f"top{k}_recall")
    else:
        rec_e = Estimate(rec, rec, rec, n=1, method="single prompt: no interval", statistic=f"top{k}_recall")
    shape = tuple(exact.values.shape[:-1])
    unr = lambda ids: [tuple(int(x) for x in np.unravel_index(i, shape)) for i in ids]  # noqa: E731
    ex_top = unr(np.argsort(-np.abs(ex.mean(1)))[:k])
    at_top = unr(np.argsort(-np.abs(at.mean(1)))[:k])
    return AgreementReport(rho, rec_e, k, n_nodes, B, ex_top, at_top, label,
                           exact.provenance.replace(extra={"method": "attribution_agreement",
                                                           "attribution": attribution.method, "k": k}),
                           attribution=attribution, exact=exact)
