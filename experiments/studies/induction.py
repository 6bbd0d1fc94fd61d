"""Induction heads: a head's detector score against what ablating that head alone does to copying.

Internal: TransformerLens's induction score (``"mul"``: mean attention from a repeated token to the
token after its first occurrence, on repeated random tokens; :func:`circuits.head_scores`).
Behavioural: the drop in the shared log-prob scorer's per-token ``log p`` of the second copy of a
repeated random string (:func:`circuits.copy_task`) when the head is zero-ablated alone. Units: the
``n_top`` highest-scoring heads and ``n_random`` other heads drawn with the seed. Expected: positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..study import StudyResult

__all__ = ["InductionStudy", "STEP", "compute", "run"]

STEP = "induction-heads"
TITLE = "Induction heads: detector score vs single-head ablation"


@dataclass
class InductionStudy:
    """``[induction]``: induction scores vs single-head ablations.

    Attributes:
        enabled: run this study.
        n_top: the highest-scoring heads ablated one at a time (all heads when the model has fewer).
        n_random: other heads, drawn at random with the seed, ablated one at a time as the comparison.
        n_seqs: repeated random-token sequences the head scores are computed on.
        half: length of each sequence's half (it is [BOS] + half + the same half); 1 + 2 * half must fit the
            model's context.
        n_copy: repeated random strings whose second copy's log p is the behaviour.
    """

    enabled: bool = True
    n_top: int = 15
    n_random: int = 15
    n_seqs: int = 10
    half: int = 50
    n_copy: int = 20


def compute(ctx: Any, m: Any, cfg: InductionStudy, *, seed: int = 0) -> StudyResult:
    import pandas as pd

    from circuits import copy_task, head_ablation, head_scores
    from workbench.crosscheck import CrossCheck
    from workbench.scorers import continuation_logprobs
    from workbench.stats import bootstrap

    hs = head_scores(m, n_seqs=cfg.n_seqs, half=cfg.half, seed=seed)
    ind = hs.get("induction", "mul").float().numpy()
    L, H = ind.shape
    order = np.argsort(-ind.ravel())
    top = [divmod(int(i), H) for i in order[:cfg.n_top]]
    rng = np.random.default_rng(seed)
    rest = [divmod(int(i), H) for i in order[cfg.n_top:]]
    rand = [rest[int(i)] for i in rng.choice(len(rest), size=min(cfg.n_random, len(rest)), replace=False)]
    prompts, conts = copy_task(m, n=cfg.n_copy, seed=seed + 1)
    ctx.record_data("copy_task", prompts, conts)
    base = continuation_logprobs(m, prompts, conts).mean_per_token
    rows = []
    for grp, heads in (("top", top), ("random", rand)):
        for (l, h) in heads:
            ab = continuation_logprobs(m, prompts, conts, interventions=head_ablation(m, [(l, h)])).mean_per_token
            drop = base - ab
            rows.append({"head": f"L{l}H{h}", "layer": l, "index": h, "set": grp, "induction_score": float(ind[l, h]),
                         "logprob_drop_per_token": float(drop.mean()),
                         "drop_stderr": float(drop.std(ddof=1) / np.sqrt(len(drop)))})
    df = pd.DataFrame(rows)
    cc = CrossCheck.from_measurements(df["head"], df["induction_score"], df["logprob_drop_per_token"],
                                      internal_name="induction score", behavioural_name="copying log p drop",
                                      unit_name="head", seed=seed,
                                      provenance=m.provenance(seed=seed, extra={"study": "induction"}))
    d_top = df[df.set == "top"]["logprob_drop_per_token"].to_numpy()
    d_rand = df[df.set == "random"]["logprob_drop_per_token"].to_numpy()
    metrics = {"clean copying log p per token": bootstrap(base, seed=seed).to_dict(),
               "top heads: mean drop": bootstrap(d_top, seed=seed).to_dict(),
               "random heads: mean drop": bootstrap(d_rand, seed=seed).to_dict() if len(d_rand) else None,
               "max induction score ('mul'; at most ~0.5 on repeated random tokens)": float(ind.max()),
               "top heads": ", ".join(f"L{l}H{h} ({ind[l, h]:.2f})" for l, h in top[:5])}
    return StudyResult(
        TITLE,
        f"Induction and previous-token scores of all {L * H} heads on {cfg.n_seqs} sequences of {cfg.half} random "
        f"tokens repeated once (TransformerLens 'mul' definitions). Cross-check over the {len(top)} top heads and "
        f"{len(rand)} random others: the induction score (internal) against the drop in log p per token of the "
        f"repeated half of {cfg.n_copy} random strings when that head alone is zero-ablated (behaviour, shared "
        "log-prob scorer); expected positive.",
        "induction", cc, results={"head_scores": hs}, plots={"head_scores": ("induction", "previous_token")},
        tables={"induction_heads": df}, metrics=metrics,
        payload={"max_induction_score": float(ind.max()), "n_layers": L, "n_heads": H,
                 "heads": df[["head", "layer", "set", "induction_score", "logprob_drop_per_token"]].to_dict("records")})


def run(ctx: Any, m: Any, cfg: InductionStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
