"""Olsson et al.'s protocol: ablate the top-k% induction heads per layer vs matched random head sets.

Internal: the summed induction score of each ablated set. Behavioural: the drop in the shared
log-prob scorer's per-token ``log p`` of the repeated half of random strings under that ablation
(:func:`circuits.induction_protocol`). Units: the targeted set and each random set. Expected:
positive. Also reported: the loss on the repeated half of random tokens and, where the model's
context holds the texts, the ICL score (loss at token 500 minus loss at token 50 on natural text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..study import StudyResult

__all__ = ["InductionProtocolStudy", "STEP", "compute", "run"]

STEP = "induction-protocol"
TITLE = "Induction protocol: targeted vs matched random ablation"


@dataclass
class InductionProtocolStudy:
    """``[protocol]``: targeted vs matched random ablation of induction heads.

    Attributes:
        enabled: run this study.
        k_percent: ablate the top ``k_percent`` % induction heads of each layer (rounding rule:
            :func:`circuits.rounding_rule`, at least one head per layer).
        n_random_sets: matched random head sets (same number of heads per layer) as the control.
        n_seqs: repeated random-token sequences the losses are measured on.
        half: length of each sequence's half.
        icl: also measure the ICL score on natural text (skipped with a note where the texts do not fit).
        n_icl: texts for the ICL score.
    """

    enabled: bool = True
    k_percent: float = 2.0
    n_random_sets: int = 10
    n_seqs: int = 20
    half: int = 50
    icl: bool = True
    n_icl: int = 8


def compute(ctx: Any, m: Any, cfg: InductionProtocolStudy, *, seed: int = 0) -> StudyResult:
    import pandas as pd

    from circuits import induction_protocol
    from workbench.crosscheck import CrossCheck

    notes, texts = [], None
    if cfg.icl:
        from circuits.text import long_texts

        try:
            texts = long_texts(m, cfg.n_icl, 520, seed=seed)
            ctx.record_data("icl_texts", texts)
        except (FileNotFoundError, ValueError) as e:
            notes.append(f"ICL score skipped: {e}")
    res = induction_protocol(m, k_percent=cfg.k_percent, n_random=cfg.n_random_sets, n_seqs=cfg.n_seqs, half=cfg.half,
                             seed=seed, icl_texts=texts, progress=ctx.progress)
    ind = res.head_scores.get("induction", "target").float().numpy()
    sets = [("targeted", res.targeted)] + [(f"random_{i}", hs) for i, hs in enumerate(res.random_sets)]
    beh = res.behaviour
    clean = np.asarray(beh["clean"].values)
    drops = [float(np.mean(clean - np.asarray(beh["targeted"].values)))] + \
            [float(np.mean(clean - np.asarray(r.values))) for r in beh["random"]]
    df = pd.DataFrame({"set": [n for n, _ in sets],
                       "summed_induction_score": [float(sum(ind[l, h] for l, h in hs)) for _, hs in sets],
                       "copy_logprob_drop": drops,
                       "repeated_half_loss": [float(res.loss_targeted.mean())]
                       + [float(x.mean()) for x in res.loss_random],
                       "heads": [",".join(f"L{l}H{h}" for l, h in hs) for _, hs in sets]})
    cc = CrossCheck.from_measurements(df["set"], df["summed_induction_score"], df["copy_logprob_drop"],
                                      internal_name="summed induction score", behavioural_name="copying log p drop",
                                      unit_name="ablated set", seed=seed,
                                      provenance=m.provenance(seed=seed, extra={"study": "induction_protocol"}))
    metrics = {"loss increase, targeted": res.effect_targeted.to_dict(),
               "loss increase, random (mean of sets)": res.effect_random.to_dict(),
               "targeted - random": res.targeted_minus_random.to_dict(),
               "copying log p, targeted - random": beh["targeted_minus_random_logprob"].to_dict(),
               "rounding rule": res.rounding}
    if res.icl_clean is not None:
        metrics["ICL score, clean"] = res.icl_clean.estimate.to_dict()
        metrics["ICL score, targeted"] = res.icl_targeted.estimate.to_dict()
        metrics["ICL score, random (first set)"] = res.icl_random[0].estimate.to_dict()
    return StudyResult(
        TITLE,
        f"{res.summary()}. Cross-check over the ablated sets: their summed induction score (internal) against "
        "the drop in per-token log p of the repeated half of random strings (behaviour, shared log-prob "
        "scorer); expected positive. ICL score: loss at token 500 minus loss at token 50 on natural text "
        "(negative = in-context learning).",
        "protocol", cc, results={"induction_protocol": res}, tables_off=("induction_protocol",),
        tables={"induction_protocol": df}, metrics=metrics, notes=notes,
        payload={"targeted_minus_random": res.targeted_minus_random.value, "n_layers": int(ind.shape[0]),
                 "k_percent": cfg.k_percent, "n_random_sets": len(res.random_sets),
                 "targeted_heads": [f"L{l}H{h}" for l, h in res.targeted],
                 "loss_targeted": res.effect_targeted.to_dict(), "loss_random": res.effect_random.to_dict(),
                 "loss_targeted_minus_random": res.targeted_minus_random.to_dict(),
                 "logprob_targeted_minus_random": beh["targeted_minus_random_logprob"].to_dict()})


def run(ctx: Any, m: Any, cfg: InductionProtocolStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
