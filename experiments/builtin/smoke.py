"""``smoke``: a quick check that a model loads, completes, scores and runs a grid (a few minutes).

Steps: greedy completions of factual prompts with the next-token logit difference of the right
answer; A/B choice on CAA behaviours (p(matching) with bootstrap CIs); refusal rates on harmful vs
harmless instructions (Wilson CIs); and a grid over layers of residual-stream norms through the
executor. Every number in the report carries its interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench.layers import LayerSpec

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext, Section
from ..study import chat_note
from ..tasks import residual_norm_task

FACTS = [("The capital of France is", " Paris", " London"), ("The capital of Japan is", " Tokyo", " Paris"),
         ("The Eiffel Tower is in the city of", " Paris", " Rome"), ("Water is made of hydrogen and", " oxygen", " carbon")]


@dataclass
class SmokeConfig:
    """The smoke check (its own config; no study of ``experiments/studies`` is composed).

    Attributes:
        behaviours: CAA behaviours scored by the A/B scorer.
        n_ab_items: A/B items per behaviour.
        n_refusal_prompts: harmful and harmless instructions each, for the refusal rates.
        max_new_tokens: tokens generated per refusal prompt.
        grid_layers: layers of the residual-norm grid (a layer spec; one task per layer).
        grid_prompts: prompts of the residual-norm grid.
    """

    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    behaviours: list[str] = field(default_factory=lambda: ["sycophancy", "corrigible-neutral-HHH"])
    n_ab_items: int = 20
    n_refusal_prompts: int = 8
    max_new_tokens: int = 24
    grid_layers: list[LayerSpec] = field(default_factory=lambda: ["first", "last"])
    grid_prompts: list[str] = field(default_factory=lambda: ["The capital of France is", "Hello there, friend"])


PRESETS = {"quick": {"n_ab_items": 4, "n_refusal_prompts": 2, "max_new_tokens": 4}}


@experiment("smoke", SmokeConfig, "quick end-to-end check: completions, A/B scores, refusal rates, a layer grid")
def run(ctx: RunContext, cfg: SmokeConfig) -> None:
    from workbench import datasets
    from workbench.layers import resolve_layers
    from workbench.plots import plot_estimates
    from workbench.scorers import RefusalScorer, ab_accuracy, ab_scores, continuation_logprobs
    from workbench.stats import bootstrap

    m = ctx.model()
    grid_layers = resolve_layers(m, cfg.grid_layers)  # a bad spec fails here, before any step runs

    def completions(w):
        import pandas as pd

        prompts = [p for p, _, _ in FACTS]
        g = m.generate(prompts, max_new_tokens=8)
        right = continuation_logprobs(m, prompts, [t for _, t, _ in FACTS]).total
        foil = continuation_logprobs(m, prompts, [f for _, _, f in FACTS]).total
        diff = right - foil
        df = pd.DataFrame({"prompt": prompts, "completion": g.completions, "target": [t for _, t, _ in FACTS],
                           "foil": [f for _, _, f in FACTS], "logprob_target": right, "logprob_foil": foil,
                           "logprob_diff": diff})
        est = bootstrap(diff, seed=cfg.seed)
        w.section(Section("Factual completions", f"Greedy completions of {len(prompts)} factual prompts, and the "
                          "log-probability of the right answer minus that of a foil.",
                          metrics={"mean log p(right) - log p(foil)": est.to_dict(),
                                   "right answer preferred": f"{int((diff > 0).sum())}/{len(prompts)}"},
                          tables=[w.table("completions", df)]))
        return {"logprob_diff": est.value}
    ctx.step("completions", completions)

    def ab(w):
        import pandas as pd

        names, ests, rows = [], [], []
        for b in cfg.behaviours:
            items = datasets.caa_items(b)[: cfg.n_ab_items]
            ctx.record_data(f"caa/{b}", [(i.question, i.matching) for i in items])
            r = ab_scores(m, items, seed=cfg.seed, chat=bool(m.facts.has_chat_template))
            names.append(b)
            ests.append(r.aggregate)
            rows.append({"behaviour": b, "p_matching": r.aggregate.value, "ci_low": r.aggregate.ci_low,
                         "ci_high": r.aggregate.ci_high, "accuracy": ab_accuracy(r).value, "n": r.n})
        fig = plot_estimates(names, ests, reference=0.5, title="p(answer matching behaviour)")
        w.section(Section("A/B behaviour (CAA)", "Mean p(answer matching behaviour) from next-token logits over the "
                          "two answer letters, unsteered. 0.5 is indifference.",
                          metrics={n: e.to_dict() for n, e in zip(names, ests)},
                          figures=[w.figure("ab", fig)], tables=[w.table("ab", pd.DataFrame(rows))],
                          notes=chat_note(m)))
        return {n: e.value for n, e in zip(names, ests)}
    ctx.step("ab", ab)

    def refusal(w):
        import pandas as pd

        harmful = datasets.harmful_instructions("harmful_val")[: cfg.n_refusal_prompts]
        harmless = datasets.harmless_instructions()[: cfg.n_refusal_prompts]
        ctx.record_data("refusal_prompts", harmful, harmless)
        chat = bool(m.facts.has_chat_template)
        g = m.generate(harmful + harmless, chat=chat, max_new_tokens=cfg.max_new_tokens)
        scorer = RefusalScorer()
        rh = scorer(harmful, g.completions[: len(harmful)])
        rs = scorer(harmless, g.completions[len(harmful):])
        fig = plot_estimates(["harmful", "harmless"], [rh.aggregate, rs.aggregate], title="refusal rate")
        df = pd.DataFrame({"kind": ["harmful"] * len(harmful) + ["harmless"] * len(harmless),
                           "prompt": harmful + harmless, "completion": g.completions,
                           "refused": np.concatenate([rh.values, rs.values])})
        w.section(Section("Refusal rates", f"Share of {'chat ' if chat else ''}completions containing a refusal phrase "
                          "(Arditi et al. 2024 list), harmful vs harmless instructions.",
                          metrics={"harmful": rh.aggregate.to_dict(), "harmless": rs.aggregate.to_dict()},
                          figures=[w.figure("refusal", fig)], tables=[w.table("refusal", df)], notes=chat_note(m)))
        return {"harmful": rh.aggregate.value, "harmless": rs.aggregate.value}
    ctx.step("refusal", refusal)

    sec = cfg.model
    tasks = [{"model": sec.name, "backend": sec.backend, "device": sec.device, "dtype": sec.dtype, "layer": L,
              "seed": cfg.seed, "prompts": list(cfg.grid_prompts)} for L in grid_layers]
    results = ctx.map("residual-norms", residual_norm_task, tasks)

    def norms(w):
        import pandas as pd

        rows = [{"layer": r["layer"], "mean_norm": float(np.mean(r["per_prompt"]))} for r in results]
        w.section(Section("Residual-stream norm by layer (grid)", "Mean norm of resid_post per layer, computed as "
                          "one task per layer through the executor.", tables=[w.table("norms", pd.DataFrame(rows))]))
        return {"norms": [r["mean_norm"] for r in rows]}
    ctx.step("norms", norms)
