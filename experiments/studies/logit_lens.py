"""Logit lens: the depth at which an answer resolves, against how sure the model is of it.

Internal: per prompt, the *resolution stage* (:func:`circuits.resolution_stages`): the first stage
(embedding, then each layer) from which the answer stays the lens's top-1 token through the output;
a prompt whose output does not rank the answer first gets one past the last stage. Behavioural:
``log p(answer)`` from the shared log-prob scorer. Units: factual prompts (:data:`circuits.FACTS`;
those whose answer is not one token for the model are dropped with a note). Expected: negative
rank correlation (answers the model is sure of are resolved earlier). Plus the lens curve and
table on the first prompt ("The capital of France is" -> " Paris").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..study import StudyResult, skipped

__all__ = ["LogitLensStudy", "STEP", "compute", "run"]

STEP = "logit-lens"
TITLE = "Logit lens: resolution depth vs confidence"


@dataclass
class LogitLensStudy:
    """``[logit_lens]``: the logit-lens study.

    Attributes:
        enabled: run this study.
        k: top tokens kept per stage in the lens table.
    """

    enabled: bool = True
    k: int = 5


def compute(ctx: Any, m: Any, cfg: LogitLensStudy, *, seed: int = 0) -> StudyResult:
    import pandas as pd

    from circuits import at_last_token, logit_lens, resolution_stages, single_token_facts
    from workbench.crosscheck import CrossCheck
    from workbench.scorers import continuation_logprobs
    from workbench.stats import bootstrap

    fs, notes = single_token_facts(m)
    if not fs:
        return skipped(TITLE, "lens", f"no fact's answer is one token for {m.name}'s tokenizer", notes=notes)
    ctx.record_data("logit_lens_facts", fs)
    prompts, targets = [p for p, _ in fs], [t for _, t in fs]
    res = logit_lens(m, prompts, targets=targets, k=cfg.k)
    depth = resolution_stages(res)
    prob = at_last_token(res, "target_prob")
    top1 = at_last_token(res, "target_rank") == 0
    S = len(res.stages)
    logp = continuation_logprobs(m, prompts, targets).total
    df = pd.DataFrame({"prompt": prompts, "answer": targets, "resolution_stage": depth,
                       "final_logprob": logp, "final_top1": top1[-1]})
    for i, st in enumerate(res.stages):
        if i % 3 == 0 or i == S - 1:
            df[f"p_answer@{st}"] = prob[i]
    cc = CrossCheck.from_measurements(prompts, depth, logp, internal_name="lens resolution stage",
                                      behavioural_name="log p(answer)", unit_name="prompt", expected_sign=-1,
                                      seed=seed, provenance=m.provenance(seed=seed, extra={"study": "logit_lens"}))
    first = logit_lens(m, prompts[0], targets=targets[0], k=cfg.k)
    pr = at_last_token(first, "target_prob")[:, 0]
    first_top = resolution_stages(first)[0]
    name = targets[0].strip()
    metrics = {f"p({name}) at the output": float(pr[-1]),
               f"p({name}) at stage {first.stages[S // 2]}": float(pr[S // 2]),
               f"first stage from which {name} stays top-1": first.stages[int(first_top)] if first_top < S else None,
               "mean resolution stage": bootstrap(depth, seed=seed).to_dict(),
               "answers top-1 at the output": f"{int(top1[-1].sum())}/{len(prompts)}"}
    return StudyResult(
        TITLE,
        f"The logit lens (Nostalgebraist 2020) reads every layer's residual stream through the final norm and "
        f"unembedding. Curve and table: '{prompts[0]}' -> '{targets[0]}' by stage. Cross-check over "
        f"{len(prompts)} factual prompts: the stage from which the answer stays the lens's top token "
        "(internal) against the model's log-probability of the answer (behaviour, shared log-prob scorer); "
        "expected negative.",
        "lens", cc, results={"lens": first}, tables_off=("lens",), tables={"lens": df}, metrics=metrics, notes=notes,
        payload={"p_target_final": float(pr[-1]), "p_target_mid": float(pr[S // 2])})


def run(ctx: Any, m: Any, cfg: LogitLensStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
