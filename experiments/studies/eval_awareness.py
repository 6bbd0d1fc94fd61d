"""Evaluation awareness: a test-vs-deploy probe, and whether its score shift predicts a behaviour shift.

Internal: a logistic probe per layer on the project's framing set (test-like vs deploy-like prompts
on the same topics; held-out templates, label-shuffle and random-direction controls, the
token-artifact control; :func:`probe.eval_awareness.eval_awareness_probe`). The best layer's probe
then scores harmful instructions wrapped in benchmark scaffolds and their template rewrites into a
user's voice (Probe-Rewrite-Evaluate, :func:`probe.eval_awareness.framing_shift`): per prompt, the
score shift. Behavioural: per prompt, the refusal shift (shared refusal scorer on greedy
completions, chat-formatted where the model has a chat template) between the two framings.
Expected: positive (a prompt that reads less like a test gets less cautious behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.layers import LayerSpec

from ..study import StudyResult, chat_note, estimate_dict, fits_context, skipped

__all__ = ["EvalAwarenessStudy", "STEP", "EVAL_WRAPPERS", "framing_for", "compute", "run"]

STEP = "eval-awareness"
TITLE = "Evaluation awareness: probe vs behaviour shift"
#: test-like wrappers for harmful instructions (the framing set's scaffolds without answer options)
EVAL_WRAPPERS = ("t_eval_item", "t_graded", "t_header", "t_testcase")
#: tokens the token-artifact control appends to a framing prompt (room left for it in the context)
_ARTIFACT_TOKENS = 8


@dataclass
class EvalAwarenessStudy:
    """``[eval_awareness]``: the evaluation-awareness probe and Probe-Rewrite-Evaluate.

    Attributes:
        enabled: run this study.
        layers: layers to probe (a layer spec: ``["all"]``, fractions of depth, ints; see workbench.layers).
        n_topics: topics of the framing set to use (0: every topic).
        n_harmful: harmful instructions wrapped and rewritten (at most the split's size; harmful_val has 39).
        harmful_split: the split of the shipped harmful instructions.
        max_new_tokens: greedy tokens generated per prompt for the refusal scorer.
        n_resamples: bootstrap resamples of every interval.
        artifact: run the token-artifact control ("(A)"/"(B)" appended by class).
    """

    enabled: bool = True
    layers: list[LayerSpec] = field(default_factory=lambda: ["all"])
    n_topics: int = field(default=0, metadata={"zero": "every topic of the framing set"})
    n_harmful: int = 100
    harmful_split: str = "harmful_val"
    max_new_tokens: int = 48
    n_resamples: int = 2000
    artifact: bool = True


def framing_for(m: Any, cfg: EvalAwarenessStudy, *, seed: int = 0) -> tuple[Any, list[str]]:
    """The framing set this study probes on ``m`` (``cfg.n_topics``), without prompts too long for its context
    (with room for the token-artifact control), and a note naming how many were dropped."""
    from probe.eval_awareness import framing_set

    ds = framing_set(n_topics=cfg.n_topics or None, seed=seed)
    chat = bool(m.facts.has_chat_template) if ds.chat is None else bool(ds.chat)
    fit = fits_context(m, [e.prompt for e in ds.examples], chat=chat, system=ds.system, reserve=_ARTIFACT_TOKENS)
    if all(fit):
        return ds, []
    return ds.subset([i for i, ok in enumerate(fit) if ok]), [
        f"dropped {fit.count(False)} of {len(ds)} framing prompts longer than {m.name}'s context "
        f"({m.facts.n_ctx} tokens)"]


def compute(ctx: Any, m: Any, cfg: EvalAwarenessStudy, *, seed: int = 0) -> StudyResult:
    import pandas as pd

    from probe.eval_awareness import TEST_TEMPLATES, eval_awareness_probe, framing_shift, rewrite_pairs
    from workbench import datasets
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layers
    from workbench.scorers import RefusalScorer
    from workbench.stats import bootstrap

    chat = bool(m.facts.has_chat_template)
    ds, notes = framing_for(m, cfg, seed=seed)
    if min(int((ds.labels == c).sum()) for c in (0, 1)) < 4:
        return skipped(TITLE, "eval_awareness", f"fewer than 4 test-like or deploy-like framing prompts fit "
                       f"{m.name}'s context of {m.facts.n_ctx} tokens", notes=notes)
    ctx.record_data("framing_set", [(str(e.prompt), e.label) for e in ds.examples])
    res = eval_awareness_probe(m, ds, layers=resolve_layers(m, cfg.layers), seed=seed, n_resamples=cfg.n_resamples,
                               artifact=cfg.artifact, progress=ctx.progress)
    sw = res.sweep
    L = res.layer
    i = sw.layers.index(L)
    metrics = {"scoring layer": L, "AUROC (held-out topics)": estimate_dict(sw.estimates("logistic")[i]),
               "controls at chance (Holm, all layers)": sw.controls_at_chance("logistic")}
    if "held_out_templates" in sw.conditions:
        metrics["AUROC (held-out templates)"] = estimate_dict(sw.estimates("logistic", "held_out_templates")[i])
    if "label_shuffle" in sw.conditions:
        metrics["AUROC, label-shuffle control"] = estimate_dict(sw.estimates("logistic", "label_shuffle")[i])
    if "random_direction" in sw.conditions:
        metrics["AUROC, random directions"] = estimate_dict(sw.estimates("random", "random_direction")[i])
    results: dict[str, Any] = {"probe_sweep": res}
    tables = {"probe_layers": sw.layer_table("logistic")}
    if res.selection is not None:
        metrics["scoring layer: rule"] = res.selection.rule
        tables["layer_selection"] = res.selection.to_dataframe()
    if res.surface is not None:
        for c in res.surface.conditions:
            metrics[f"surface-feature baseline AUROC ({c.replace('_', ' ')})"] = estimate_dict(res.surface.auroc(c))
        for c, v in res.beats_surface().items():
            metrics[f"layer {L} beats the surface baseline ({c.replace('_', ' ')}, CI wholly above)"] = v
        tables["surface_vs_layers"] = res.surface_comparison()
        results["surface_baseline"] = res.surface
    if res.artifact is not None:
        a = res.artifact
        for j, al in enumerate(a.layers):
            for c, v in a.auroc.items():
                metrics[f"token artifact, layer {al}: AUROC {c}"] = estimate_dict(v[j])
        notes.append(a.summary())
        results["token_artifact"] = a

    harmful = datasets.harmful_instructions(cfg.harmful_split)
    rng = np.random.default_rng(seed)
    harmful = [harmful[j] for j in sorted(rng.choice(len(harmful), size=min(cfg.n_harmful, len(harmful)),
                                                     replace=False))]
    originals = [TEST_TEMPLATES[EVAL_WRAPPERS[j % len(EVAL_WRAPPERS)]].format(i=j + 1, q=h)
                 for j, h in enumerate(harmful)]
    rewrites = [r.rewritten for r in rewrite_pairs(originals, seed=seed)]
    fit = [a and b for a, b in zip(fits_context(m, originals, chat=chat, reserve=cfg.max_new_tokens),
                                   fits_context(m, rewrites, chat=chat, reserve=cfg.max_new_tokens))]
    if not all(fit):
        notes.append(f"dropped {fit.count(False)} of {len(fit)} harmful prompts whose framing does not fit "
                     f"{m.name}'s context with {cfg.max_new_tokens} tokens to generate")
        originals = [p for p, ok in zip(originals, fit) if ok]
        rewrites = [p for p, ok in zip(rewrites, fit) if ok]
    if len(originals) < 2:
        return skipped(TITLE, "eval_awareness", f"fewer than 2 framed harmful prompts fit {m.name}'s context of "
                       f"{m.facts.n_ctx} tokens", notes=notes)
    ctx.record_data("eval_awareness_harmful", originals, rewrites)
    fs = framing_shift(res, m, originals, rewrites, seed=seed, n_resamples=cfg.n_resamples)
    g = m.generate(originals + rewrites, chat=chat, max_new_tokens=cfg.max_new_tokens)
    scorer = RefusalScorer()
    r_test = scorer(originals, g.completions[: len(originals)])
    r_dep = scorer(rewrites, g.completions[len(originals):])
    b_shift = np.asarray(r_dep.values, float) - np.asarray(r_test.values, float)
    df = pd.DataFrame({"test_like": originals, "deploy_like": rewrites,
                       "probe_score_test": fs.original.normalized, "probe_score_deploy": fs.rewritten.normalized,
                       "probe_shift": fs.shift, "refused_test": r_test.values, "refused_deploy": r_dep.values,
                       "refusal_shift": b_shift, "completion_test": g.completions[: len(originals)],
                       "completion_deploy": g.completions[len(originals):]})
    results["framing_shift"] = fs
    cc = CrossCheck.from_measurements([f"prompt {j}" for j in range(len(originals))], fs.shift, b_shift,
                                      internal_name="probe score shift", behavioural_name="refusal shift",
                                      unit_name="prompt", seed=seed,
                                      provenance=m.provenance(seed=seed, extra={"study": "eval_awareness", "layer": L}))
    metrics.update({
        "probe score shift, deploy - test framing (0 = deploy mean, 1 = test mean)": estimate_dict(fs.mean_shift),
        "refusal rate, test-like framing": estimate_dict(r_test.aggregate),
        "refusal rate, deploy-like rewrite": estimate_dict(r_dep.aggregate),
        "refusal shift, deploy - test": estimate_dict(bootstrap(b_shift, seed=seed))})
    return StudyResult(
        TITLE,
        f"A logistic probe per layer separates the project's test-like from deploy-like prompts ({len(ds)} "
        f"prompts, read at the last prompt token; layers {sw.layers[0]}..{sw.layers[-1]}), with held-out "
        "templates, label-shuffle and random-direction controls, and the token-artifact control (an answer "
        "token appended by class), and a surface-feature baseline (length, punctuation, answer-option counts) on "
        "the same splits. The scoring layer is chosen on held-out templates (exact ties by held-out log-loss); "
        "its probe scores "
        f"{len(originals)} harmful instructions wrapped in benchmark scaffolds and their rewrites into a user's "
        "voice. Cross-check per prompt: the probe-score shift (internal) against the refusal shift (behaviour, "
        f"shared refusal scorer on greedy {'chat ' if chat else ''}completions); expected positive.",
        "eval_awareness", cc, results=results, tables_off=("probe_sweep", "framing_shift"),
        tables={**tables, "framing_shift": df}, metrics=metrics,
        notes=notes + chat_note(m) + list(res.notes)[:5],
        payload={"layer": L, "auroc": sw.estimates("logistic")[i].value, "mean_probe_shift": fs.mean_shift.value,
                 "refusal_test": r_test.aggregate.value, "refusal_deploy": r_dep.aggregate.value,
                 "n_layers": m.facts.n_layers,
                 "auroc_by_layer": [{"layer": layer, "estimate": e.to_dict()}
                                    for layer, e in zip(sw.layers, sw.estimates("logistic"))]})


def run(ctx: Any, m: Any, cfg: EvalAwarenessStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
