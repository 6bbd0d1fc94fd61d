"""Activation patching on factual recall, and attribution patching cross-checked against it.

Behavioural: exact denoising patching of every head's output (``z``, all positions) from the clean
into the corrupt run, measured on the model's output logit difference (correct capital minus the
corrupt prompt's; :func:`circuits.factual_recall_batch`). Internal: attribution patching (AtP, a
first-order estimate from one backward pass). Units: heads. Expected: positive. Plus the
residual-stream sweep by (layer, position). Pairs whose subject or answer is not one token for the
model are dropped with a note (fewer than two left: the study is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..study import StudyResult, skipped

__all__ = ["PatchingStudy", "STEP", "compute", "run"]

STEP = "patching"
TITLE = "Activation patching and attribution patching (factual recall)"


@dataclass
class PatchingStudy:
    """``[patching]``: exact head patching vs attribution patching.

    Attributes:
        enabled: run this study.
        resid_sweep: also patch the residual stream (``resid_pre``) by layer and position.
        k: top-k recall of AtP against exact patching is reported for this k.
    """

    enabled: bool = True
    resid_sweep: bool = True
    k: int = 10


def compute(ctx: Any, m: Any, cfg: PatchingStudy, *, seed: int = 0) -> StudyResult:
    from circuits import attribution_agreement, attribution_patching, factual_recall_batch, patching_sweep, usable_pairs
    from workbench.crosscheck import CrossCheck

    pairs, notes = usable_pairs(m)
    if len(pairs) < 2:
        return skipped(TITLE, "patching", f"fewer than two factual pairs have one-token subjects and answers for "
                       f"{m.name}'s tokenizer", notes=notes)
    clean, corrupt, metric = factual_recall_batch(m, pairs)
    ctx.record_data("patching_prompts", clean, corrupt)
    results = {}
    if cfg.resid_sweep:
        results["resid_pre_sweep"] = patching_sweep(m, clean, corrupt, "resid_pre", metric=metric)
    exact = patching_sweep(m, clean, corrupt, "z", metric=metric)
    atp = attribution_patching(m, clean, corrupt, "head", metric=metric)
    rep = attribution_agreement(atp, exact, k=cfg.k, seed=seed)
    results.update({"head_patching": exact, "atp_vs_exact": rep})
    L, H = exact.values.shape[:2]
    ex = exact.values.reshape(L * H, -1).float().mean(-1).numpy()
    at = atp.values.reshape(L * H, -1).float().mean(-1).numpy()
    units = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    cc = CrossCheck.from_measurements(units, at, ex, internal_name="AtP estimate",
                                      behavioural_name="exact patching effect on logit diff", unit_name="head",
                                      seed=seed, provenance=m.provenance(seed=seed, extra={"study": "patching"}))
    metrics = {f"top-{cfg.k} recall (AtP vs exact)": rep.recall_at_k.to_dict(),
               "Spearman (agreement report, over heads)": rep.spearman.to_dict(),
               "exact top heads": ", ".join(f"L{a}H{b}" for a, b in rep.exact_top[:5])}
    return StudyResult(
        TITLE,
        f"{len(clean)} pairs 'The capital of X is' (clean) vs the next pair's country (corrupt); metric: logit "
        "difference of the clean answer over the corrupt one, normalised (patched - corrupt)/(clean - corrupt). "
        + ("Heatmap 1: patching the residual stream (resid_pre) by layer and position. " if cfg.resid_sweep else "")
        + "Then every head's output patched over all positions (exact, behaviour at the output) against "
        "attribution patching (AtP, internal gradient estimate); expected positive.",
        "patching", cc, results=results, metrics=metrics, notes=notes,
        payload={"recall_at_k": rep.recall_at_k.value, "spearman": rep.spearman.value})


def run(ctx: Any, m: Any, cfg: PatchingStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
