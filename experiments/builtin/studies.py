"""Studies shared by the built-in experiments: each pairs an internal result with a behavioural one.

A study is a function ``study(ctx, model, ...)`` that runs as one resumable step of the run
(:meth:`experiments.run.RunContext.step`) and writes one or more report sections. Every section that
makes a claim carries a :class:`workbench.crosscheck.CrossCheck`: the internal measurement and the
behavioural measurement over the same units (prompts, heads, personas), their rank correlation with
a bootstrap CI and permutation p, and the verdict. The behavioural side always goes through the
shared scorers in :mod:`workbench.scorers`, so the numbers mean the same thing in every study.

``cross-check`` runs every study at a size that fits the 15-minute CPU budget of ``make demo``; the
dedicated experiments (``eval-awareness``, ``persona-non-grata``, ``induction-signatures``,
``preference-dimensions``) run one study at full size with their extra sections.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..run import Section

__all__ = ["crosscheck_section", "logit_lens_study", "patching_study", "induction_study",
           "induction_protocol_study", "eval_awareness_study", "persona_study", "caa_study",
           "preference_study", "FACTS"]

# "The capital of X is" -> " Y": single-token answers in SmolLM2's (and GPT-2's) vocabulary. Prompts whose
# answer is not one token for the model at hand are dropped with a note.
FACTS: list[tuple[str, str]] = [
    ("The capital of France is", " Paris"), ("The capital of Italy is", " Rome"),
    ("The capital of Germany is", " Berlin"), ("The capital of Spain is", " Madrid"),
    ("The capital of Japan is", " Tokyo"), ("The capital of Russia is", " Moscow"),
    ("The capital of Greece is", " Athens"), ("The capital of Egypt is", " Cairo"),
    ("The capital of England is", " London"), ("The capital of China is", " Beijing"),
    ("The capital of Ireland is", " Dublin"), ("The capital of Austria is", " Vienna"),
    ("The capital of Poland is", " Warsaw"), ("The capital of Portugal is", " Lisbon"),
    ("The capital of Canada is", " Ottawa"), ("The capital of Sweden is", " Stockholm"),
    ("The Eiffel Tower is in the city of", " Paris"), ("The Colosseum is in the city of", " Rome"),
    ("Water is made of hydrogen and", " oxygen"), ("The opposite of hot is", " cold"),
    ("The largest planet in the solar system is", " Jupiter"), ("The sun rises in the", " east"),
    ("Monday, Tuesday,", " Wednesday"), ("One, two, three,", " four"),
]


def _prov(m: Any, seed: int, **extra: Any):
    return m.provenance(seed=seed, extra=extra)


def crosscheck_section(w: Any, slug: str, cc: Any, title: str, summary: str, *, metrics: dict | None = None,
                       figures: Sequence[str] = (), tables: Sequence[str] = (), notes: Sequence[str] = ()) -> dict:
    """Write one report section around a CrossCheck (its scatter plot and per-unit table included)."""
    from workbench.plots import plot_crosscheck

    fig = w.figure(f"{slug}_crosscheck", plot_crosscheck(cc))
    tab = w.table(f"{slug}_crosscheck", cc.to_dataframe())
    w.json(f"{slug}_crosscheck", cc.to_dict())
    w.section(Section(title, summary, verdict=cc.verdict, verdict_detail=" " + cc.summary(),
                      metrics={"cross-check " + cc.method_label: cc.correlation.to_dict() if cc.correlation else None,
                               **(metrics or {})},
                      figures=[*figures, fig], tables=[*tables, tab], notes=[*notes, *cc.notes]))
    return {"verdict": cc.verdict, "correlation": cc.correlation.value if cc.correlation else None}


def _single_token_facts(m: Any, facts: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    keep, dropped = [], []
    for p, t in facts:
        ids = m.tokenizer.encode(t, add_special_tokens=False)
        (keep if len(ids) == 1 else dropped).append((p, t))
    notes = [f"dropped {len(dropped)} facts whose answer is not one token: {[t for _, t in dropped]}"] if dropped else []
    return keep, notes


# ------------------------------------------------------------------------------------------------ logit lens
def logit_lens_study(ctx: Any, m: Any, *, facts: Sequence[tuple[str, str]] = FACTS, seed: int = 0,
                     step: str = "logit-lens") -> dict:
    """Logit lens: at which depth does the answer become the lens's top token, vs how sure the model is.

    Internal: per prompt, the *resolution depth*, the first stage from which the answer stays the
    lens's top-1 token through the output (stages: embedding, then each layer; a prompt whose output
    does not rank the answer first gets one past the last stage). Behavioural: ``log p(answer)`` from
    the shared log-prob scorer. Expected: negative rank correlation (answers the model is sure of are
    resolved earlier).
    """
    def run(w):
        import pandas as pd
        import torch

        from circuits import logit_lens
        from circuits.plots import plot_lens, plot_lens_table
        from workbench.crosscheck import CrossCheck
        from workbench.scorers import continuation_logprobs
        from workbench.stats import bootstrap

        fs, notes = _single_token_facts(m, facts)
        ctx.record_data("logit_lens_facts", fs)
        prompts, targets = [p for p, _ in fs], [t for _, t in fs]
        res = logit_lens(m, prompts, targets=targets, k=5)
        last = res.mask.long().cumsum(1).argmax(1)  # last real position per prompt (either padding side)
        rows = torch.arange(len(prompts))
        rank = res.target_rank[:, rows, last].numpy()  # [stages, B]
        prob = res.target_prob[:, rows, last].numpy()
        S = rank.shape[0]
        top1 = rank == 0  # ranks are 0-based (number of tokens with a higher logit)
        depth = np.full(len(prompts), float(S))
        for b in range(len(prompts)):
            if top1[-1, b]:
                s = S - 1
                while s > 0 and top1[s - 1, b]:
                    s -= 1
                depth[b] = s
        logp = continuation_logprobs(m, prompts, targets).total
        df = pd.DataFrame({"prompt": prompts, "answer": targets, "resolution_stage": depth,
                           "final_logprob": logp, "final_top1": top1[-1]})
        for i, st in enumerate(res.stages):
            if i % 3 == 0 or i == S - 1:
                df[f"p_answer@{st}"] = prob[i]
        cc = CrossCheck.from_measurements(prompts, depth, logp, internal_name="lens resolution stage",
                                          behavioural_name="log p(answer)", unit_name="prompt", expected_sign=-1,
                                          seed=seed, provenance=_prov(m, seed, study="logit_lens"))
        paris = logit_lens(m, prompts[0], targets=targets[0], k=5)
        pr = paris.target_prob[:, 0, -1].numpy()
        pk = paris.target_rank[:, 0, -1].numpy()
        first = next((i for i in range(S) if (pk[i:] == 0).all()), None)
        figs = [w.figure("lens_curve", plot_lens(paris)), w.figure("lens_table", plot_lens_table(paris, every=2))]
        metrics = {f"p({targets[0].strip()}) at the output": float(pr[-1]),
                   f"p({targets[0].strip()}) at stage {paris.stages[S // 2]}": float(pr[S // 2]),
                   f"first stage from which {targets[0].strip()} stays top-1": paris.stages[first] if first is not None else None,
                   "mean resolution stage": bootstrap(depth, seed=seed).to_dict(),
                   "answers top-1 at the output": f"{int(top1[-1].sum())}/{len(prompts)}"}
        out = crosscheck_section(
            w, "lens", cc, "Logit lens: resolution depth vs confidence",
            f"The logit lens (Nostalgebraist 2020) reads every layer's residual stream through the final norm and "
            f"unembedding. Curve and table: '{prompts[0]}' -> '{targets[0]}' by stage. Cross-check over "
            f"{len(prompts)} factual prompts: the stage from which the answer stays the lens's top token "
            "(internal) against the model's log-probability of the answer (behaviour, shared log-prob scorer); "
            "expected negative.",
            metrics=metrics, figures=figs, tables=[w.table("lens", df)], notes=notes)
        return {**out, "p_target_final": float(pr[-1]), "p_target_mid": float(pr[S // 2])}
    return ctx.step(step, run)


# ------------------------------------------------------------------------------------------------ patching
def patching_study(ctx: Any, m: Any, *, resid_sweep: bool = True, k: int = 10, seed: int = 0,
                   step: str = "patching") -> dict:
    """Activation patching on factual recall, and attribution patching cross-checked against it.

    Behavioural: exact denoising patching of every head's output (``z``, all positions) from the clean
    into the corrupt run, measured on the model's output logit difference (correct capital minus the
    corrupt prompt's). Internal: attribution patching (AtP, a first-order estimate from one backward
    pass). Units: heads. Expected: positive. Plus the residual-stream sweep by (layer, position).
    """
    def run(w):
        from circuits import attribution_agreement, attribution_patching, patching_sweep
        from circuits.plots import plot_attribution_agreement, plot_patching
        from circuits.reports import factual_recall_batch
        from workbench.crosscheck import CrossCheck

        clean, corrupt, metric = factual_recall_batch(m)
        ctx.record_data("patching_prompts", clean, corrupt)
        figs, tables, metrics = [], [], {}
        if resid_sweep:
            rs = patching_sweep(m, clean, corrupt, "resid_pre", metric=metric)
            figs.append(w.figure("resid_pre_sweep", plot_patching(rs)))
            tables.append(w.table("resid_pre_sweep", rs.to_dataframe()))
        exact = patching_sweep(m, clean, corrupt, "z", metric=metric)
        atp = attribution_patching(m, clean, corrupt, "head", metric=metric)
        rep = attribution_agreement(atp, exact, k=k, seed=seed)
        figs += [w.figure("head_patching", plot_patching(exact)),
                 w.figure("atp_vs_exact", plot_attribution_agreement(atp, exact, rep))]
        tables.append(w.table("head_patching", exact.to_dataframe()))
        L, H = exact.values.shape[:2]
        ex = exact.values.reshape(L * H, -1).float().mean(-1).numpy()
        at = atp.values.reshape(L * H, -1).float().mean(-1).numpy()
        units = [f"L{l}H{h}" for l in range(L) for h in range(H)]
        cc = CrossCheck.from_measurements(units, at, ex, internal_name="AtP estimate",
                                          behavioural_name="exact patching effect on logit diff", unit_name="head",
                                          seed=seed, provenance=_prov(m, seed, study="patching"))
        metrics.update({f"top-{k} recall (AtP vs exact)": rep.recall_at_k.to_dict(),
                        "Spearman (agreement report, over heads)": rep.spearman.to_dict(),
                        "exact top heads": ", ".join(f"L{a}H{b}" for a, b in rep.exact_top[:5])})
        out = crosscheck_section(
            w, "patching", cc, "Activation patching and attribution patching (factual recall)",
            f"{len(clean)} pairs 'The capital of X is' (clean) vs the next pair's country (corrupt); metric: logit "
            "difference of the clean answer over the corrupt one, normalised (patched - corrupt)/(clean - corrupt). "
            + ("Heatmap 1: patching the residual stream (resid_pre) by layer and position. " if resid_sweep else "")
            + "Then every head's output patched over all positions (exact, behaviour at the output) against "
            "attribution patching (AtP, internal gradient estimate); expected positive.",
            metrics=metrics, figures=figs, tables=tables)
        return {**out, "recall_at_k": rep.recall_at_k.value, "spearman": rep.spearman.value}
    return ctx.step(step, run)


# ------------------------------------------------------------------------------------------------ induction
def induction_study(ctx: Any, m: Any, *, n_top: int = 10, n_random: int = 10, n_seqs: int = 10, half: int = 50,
                    n_copy: int = 20, seed: int = 0, step: str = "induction-heads") -> dict:
    """Induction heads: the detector's score of a head vs what ablating that head alone does to copying.

    Internal: TransformerLens's induction score (mean attention from a repeated token to the token
    after its first occurrence, repeated random tokens). Behavioural: the drop in the shared log-prob
    scorer's ``log p`` of the second copy of a repeated random word string when the head is zero-ablated
    alone. Units: the ``n_top`` highest-scoring heads and ``n_random`` other heads drawn with the seed.
    Expected: positive.
    """
    def run(w):
        import pandas as pd

        from circuits import copy_task, head_ablation, head_scores
        from circuits.plots import plot_head_scores
        from workbench.crosscheck import CrossCheck
        from workbench.scorers import continuation_logprobs
        from workbench.stats import bootstrap

        hs = head_scores(m, n_seqs=n_seqs, half=half, seed=seed)
        ind = hs.get("induction", "mul").float().numpy()
        L, H = ind.shape
        order = np.argsort(-ind.ravel())
        top = [divmod(int(i), H) for i in order[:n_top]]
        rng = np.random.default_rng(seed)
        rest = [divmod(int(i), H) for i in order[n_top:]]
        rand = [rest[int(i)] for i in rng.choice(len(rest), size=min(n_random, len(rest)), replace=False)]
        prompts, conts = copy_task(m, n=n_copy, seed=seed + 1)
        ctx.record_data("copy_task", prompts, conts)
        base = continuation_logprobs(m, prompts, conts).mean_per_token
        rows = []
        for grp, heads in (("top", top), ("random", rand)):
            for (l, h) in heads:
                ab = continuation_logprobs(m, prompts, conts, interventions=head_ablation(m, [(l, h)])).mean_per_token
                drop = base - ab
                rows.append({"head": f"L{l}H{h}", "layer": l, "index": h, "set": grp, "induction_score": float(ind[l, h]),
                             "logprob_drop_per_token": float(drop.mean()), "drop_stderr": float(drop.std(ddof=1) / np.sqrt(len(drop)))})
        df = pd.DataFrame(rows)
        cc = CrossCheck.from_measurements(df["head"], df["induction_score"], df["logprob_drop_per_token"],
                                          internal_name="induction score", behavioural_name="copying log p drop",
                                          unit_name="head", seed=seed, provenance=_prov(m, seed, study="induction"))
        d_top = df[df.set == "top"]["logprob_drop_per_token"].to_numpy()
        d_rand = df[df.set == "random"]["logprob_drop_per_token"].to_numpy()
        figs = [w.figure("induction_scores", plot_head_scores(hs, "induction")),
                w.figure("previous_token_scores", plot_head_scores(hs, "previous_token"))]
        metrics = {"clean copying log p per token": bootstrap(base, seed=seed).to_dict(),
                   "top heads: mean drop": bootstrap(d_top, seed=seed).to_dict(),
                   "random heads: mean drop": bootstrap(d_rand, seed=seed).to_dict(),
                   "max induction score ('mul'; at most ~0.5 on repeated random tokens)": float(ind.max()),
                   "top heads": ", ".join(f"L{l}H{h} ({ind[l, h]:.2f})" for l, h in top[:5])}
        out = crosscheck_section(
            w, "induction", cc, "Induction heads: detector score vs single-head ablation",
            f"Induction and previous-token scores of all {L * H} heads on {n_seqs} sequences of {half} random tokens "
            f"repeated once (TransformerLens 'mul' definitions). Cross-check over the {len(top)} top heads and "
            f"{len(rand)} random others: the induction score (internal) against the drop in log p per token of the "
            f"repeated half of {n_copy} random word strings when that head alone is zero-ablated (behaviour, shared "
            "log-prob scorer); expected positive.",
            metrics=metrics, figures=figs, tables=[w.table("induction_heads", df), w.table("head_scores", hs.to_dataframe())])
        return {**out, "max_induction_score": float(ind.max())}
    return ctx.step(step, run)


def induction_protocol_study(ctx: Any, m: Any, *, k_percent: float = 2.0, n_random: int = 10, n_seqs: int = 20,
                             half: int = 50, icl: bool = True, n_icl: int = 8, seed: int = 0,
                             step: str = "induction-protocol") -> dict:
    """Olsson et al.'s protocol: ablate the top-k% induction heads per layer vs matched random head sets.

    Internal: the summed induction score of each ablated set. Behavioural: the drop in the shared
    log-prob scorer's per-token ``log p`` of the repeated half of random word strings under that
    ablation. Units: the targeted set and each random set. Expected: positive. Also reported: loss on
    the repeated half of random tokens and, where ../shared text is available, the ICL score.
    """
    def run(w):
        import pandas as pd

        from circuits import induction_protocol
        from circuits.plots import plot_induction_protocol
        from workbench.crosscheck import CrossCheck

        notes, texts = [], None
        if icl:
            from circuits.text import long_texts

            try:
                texts = long_texts(m, n_icl, 520, seed=seed)
                ctx.record_data("icl_texts", texts)
            except (FileNotFoundError, ValueError) as e:
                notes.append(f"ICL score skipped: {e}")
        res = induction_protocol(m, k_percent=k_percent, n_random=n_random, n_seqs=n_seqs, half=half, seed=seed,
                                 icl_texts=texts, progress=ctx.progress)
        ind = res.head_scores.get("induction", "target").float().numpy()
        sets = [("targeted", res.targeted)] + [(f"random_{i}", hs) for i, hs in enumerate(res.random_sets)]
        beh = res.behaviour
        clean = np.asarray(beh["clean"].values)
        drops = [float(np.mean(clean - np.asarray(beh["targeted"].values)))] + \
                [float(np.mean(clean - np.asarray(r.values))) for r in beh["random"]]
        df = pd.DataFrame({"set": [n for n, _ in sets], "summed_induction_score": [float(sum(ind[l, h] for l, h in hs)) for _, hs in sets],
                           "copy_logprob_drop": drops,
                           "repeated_half_loss": [float(res.loss_targeted.mean())] + [float(x.mean()) for x in res.loss_random],
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
        out = crosscheck_section(
            w, "protocol", cc, "Induction protocol: targeted vs matched random ablation",
            f"{res.summary()}. Cross-check over the ablated sets: their summed induction score (internal) against "
            "the drop in per-token log p of the repeated half of random word strings (behaviour, shared log-prob "
            "scorer); expected positive. ICL score: loss at token 500 minus loss at token 50 on natural text "
            "(negative = in-context learning).",
            metrics=metrics, figures=[w.figure("induction_protocol", plot_induction_protocol(res))],
            tables=[w.table("induction_protocol", df)], notes=notes)
        return {**out, "targeted_minus_random": res.targeted_minus_random.value}
    return ctx.step(step, run)


# ------------------------------------------------------------------------------------------------ eval awareness
#: test-like wrappers for harmful instructions (the framing set's scaffolds without answer options)
EVAL_WRAPPERS = ("t_eval_item", "t_graded", "t_header", "t_testcase")


def _est(e: Any) -> dict | None:
    return None if e is None else e.to_dict()


def eval_awareness_study(ctx: Any, m: Any, *, layers: Any = None, n_topics: int | None = None, n_harmful: int = 48,
                         harmful_split: str = "harmful_val", max_new_tokens: int = 32, n_resamples: int = 1000,
                         artifact: bool = True, seed: int = 0, step: str = "eval-awareness") -> dict:
    """Evaluation awareness: a test-vs-deploy probe, and whether its score shift predicts a behaviour shift.

    Internal: a logistic probe per layer on the project's framing set (test-like vs deploy-like
    prompts on the same topics; held-out templates, label-shuffle and random-direction controls, the
    token-artifact control). The best layer's probe then scores harmful instructions wrapped in
    benchmark scaffolds and their template rewrites into a user's voice (Probe-Rewrite-Evaluate):
    per prompt, the score shift. Behavioural: per prompt, the refusal shift (shared refusal scorer on
    greedy chat completions) between the two framings. Expected: positive (a prompt that reads less
    like a test gets less cautious behaviour).
    """
    def run(w):
        import pandas as pd

        from probe.eval_awareness import TEST_TEMPLATES, eval_awareness_probe, framing_set, framing_shift, rewrite_pairs
        from probe.plots import plot_eval_awareness, plot_framing_shift, plot_token_artifact
        from workbench import datasets
        from workbench.crosscheck import CrossCheck
        from workbench.scorers import RefusalScorer
        from workbench.stats import bootstrap

        ds = framing_set(n_topics=n_topics, seed=seed)
        ctx.record_data("framing_set", [(str(e.prompt), e.label) for e in ds.examples])
        res = eval_awareness_probe(m, ds, layers=layers, seed=seed, n_resamples=n_resamples, artifact=artifact,
                                   progress=ctx.progress)
        sw = res.sweep
        L = res.layer
        i = sw.layers.index(L)
        figs = [w.figure("probe_sweep", plot_eval_awareness(res))]
        if res.artifact is not None:
            figs.append(w.figure("token_artifact", plot_token_artifact(res.artifact)))
        probe_metrics = {"scoring layer": L, "AUROC (held-out topics)": _est(sw.estimates("logistic")[i]),
                         "controls at chance (Holm, all layers)": sw.controls_at_chance("logistic")}
        if "held_out_templates" in sw.conditions:
            probe_metrics["AUROC (held-out templates)"] = _est(sw.estimates("logistic", "held_out_templates")[i])
        if "label_shuffle" in sw.conditions:
            probe_metrics["AUROC, label-shuffle control"] = _est(sw.estimates("logistic", "label_shuffle")[i])
        if "random_direction" in sw.conditions:
            probe_metrics["AUROC, random directions"] = _est(sw.estimates("random", "random_direction")[i])
        art_notes = []
        if res.artifact is not None:
            a = res.artifact
            for j, al in enumerate(a.layers):
                for c, v in a.auroc.items():
                    probe_metrics[f"token artifact, layer {al}: AUROC {c}"] = _est(v[j])
            art_notes.append(a.summary())
        tables = [w.table("probe_layers", sw.layer_table("logistic"))]

        harmful = datasets.harmful_instructions(harmful_split)
        rng = np.random.default_rng(seed)
        harmful = [harmful[j] for j in sorted(rng.choice(len(harmful), size=min(n_harmful, len(harmful)), replace=False))]
        originals = [TEST_TEMPLATES[EVAL_WRAPPERS[j % len(EVAL_WRAPPERS)]].format(i=j + 1, q=h)
                     for j, h in enumerate(harmful)]
        rewrites = [r.rewritten for r in rewrite_pairs(originals, seed=seed)]
        ctx.record_data("eval_awareness_harmful", originals, rewrites)
        fs = framing_shift(res, m, originals, rewrites, seed=seed, n_resamples=n_resamples)
        g = m.generate(originals + rewrites, chat=True, max_new_tokens=max_new_tokens)
        scorer = RefusalScorer()
        r_test = scorer(originals, g.completions[: len(originals)])
        r_dep = scorer(rewrites, g.completions[len(originals):])
        b_shift = np.asarray(r_dep.values, float) - np.asarray(r_test.values, float)
        df = pd.DataFrame({"test_like": originals, "deploy_like": rewrites,
                           "probe_score_test": fs.original.normalized, "probe_score_deploy": fs.rewritten.normalized,
                           "probe_shift": fs.shift, "refused_test": r_test.values, "refused_deploy": r_dep.values,
                           "refusal_shift": b_shift, "completion_test": g.completions[: len(originals)],
                           "completion_deploy": g.completions[len(originals):]})
        tables.append(w.table("framing_shift", df))
        figs.append(w.figure("framing_shift", plot_framing_shift(fs)))
        cc = CrossCheck.from_measurements([f"prompt {j}" for j in range(len(originals))], fs.shift, b_shift,
                                          internal_name="probe score shift", behavioural_name="refusal shift",
                                          unit_name="prompt", seed=seed,
                                          provenance=_prov(m, seed, study="eval_awareness", layer=L))
        metrics = {**probe_metrics,
                   "probe score shift, deploy - test framing (0 = deploy mean, 1 = test mean)": _est(fs.mean_shift),
                   "refusal rate, test-like framing": _est(r_test.aggregate),
                   "refusal rate, deploy-like rewrite": _est(r_dep.aggregate),
                   "refusal shift, deploy - test": _est(bootstrap(b_shift, seed=seed))}
        out = crosscheck_section(
            w, "eval_awareness", cc, "Evaluation awareness: probe vs behaviour shift",
            f"A logistic probe per layer separates the project's test-like from deploy-like prompts ({len(ds)} "
            f"prompts, read at the last prompt token; layers {sw.layers[0]}..{sw.layers[-1]}), with held-out "
            "templates, label-shuffle and random-direction controls, and the token-artifact control (an answer "
            "token appended by class). The best layer's probe scores "
            f"{len(originals)} harmful instructions wrapped in benchmark scaffolds and their rewrites into a user's "
            "voice. Cross-check per prompt: the probe-score shift (internal) against the refusal shift (behaviour, "
            "shared refusal scorer on greedy chat completions); expected positive.",
            metrics=metrics, figures=figs, tables=tables, notes=art_notes + list(res.notes)[:5])
        return {**out, "layer": L, "auroc": sw.estimates("logistic")[i].value, "mean_probe_shift": fs.mean_shift.value,
                "refusal_test": r_test.aggregate.value, "refusal_deploy": r_dep.aggregate.value}
    return ctx.step(step, run)


# ------------------------------------------------------------------------------------------------ personas
def persona_study(ctx: Any, m: Any, *, personas: Sequence[str] | None = None, layer: int = 12, n_questions: int = 8,
                  n_pairs: int = 3, max_new_tokens: int = 32, n_statements: int = 40, n_harmful: int = 16,
                  judge: bool = True, strength: Any = "median_prompt_kl", n_kl_prompts: int | None = None,
                  seed: int = 0, step: str = "personas") -> dict:
    """A persona imposed by system prompt vs by steering with its persona vector, at matched strength.

    Both methods are scored by the same scorers (agreement with the persona's statements; attack
    success on harmful requests through the refusal scorer; a trait judge where enabled). The
    cross-check: per (persona, scorer), the steering effect (steered - baseline, internal
    intervention) against the prompting effect (prompted - baseline, behaviour as users elicit it).
    Expected: positive.
    """
    def run(w):
        import pandas as pd

        from steering.plots import plot_persona_comparison
        from steering.runs import run_persona_experiment
        from workbench.crosscheck import CrossCheck

        exp = run_persona_experiment(m, personas, layer=layer, n_questions=n_questions, n_pairs=n_pairs,
                                     max_new_tokens=max_new_tokens, n_statements=n_statements, n_harmful=n_harmful,
                                     judge=judge, strength=strength, n_kl_prompts=n_kl_prompts, seed=seed,
                                     progress=ctx.progress)
        comp = exp.comparison
        df = comp.to_dataframe()
        ctx.record_data("personas", sorted(df["persona"].unique().tolist()) if "persona" in df else [])
        units, steer, prompt = _persona_effects(df)
        cc = CrossCheck.from_measurements(units, steer, prompt, internal_name="steering effect",
                                          behavioural_name="prompting effect", unit_name="persona x scorer",
                                          seed=seed, provenance=_prov(m, seed, study="personas", layer=layer))
        corr = comp.correlation_table()
        metrics = {"steering layer": layer, "strength matching": str(strength)}
        for _, r in corr.iterrows():
            metrics[f"Spearman prompt vs steer ({r.get('scorer', '')})"] = {k: r[k] for k in r.index if k != "scorer"}
        out = crosscheck_section(
            w, "personas", cc, "Personas: prompted vs steered",
            f"{len(set(u.split(' / ')[0] for u in units))} personas imposed by a system prompt and by adding the "
            f"persona vector (mean activation difference of persona-prompted vs neutral answers) at layer {layer}, "
            "its strength matched to the prompts' next-token KL. Both scored by the same shared scorers. "
            "Cross-check per (persona, scorer): steering effect (steered - baseline) vs prompting effect "
            "(prompted - baseline); expected positive.",
            metrics=metrics, figures=[w.figure("persona_comparison", plot_persona_comparison(comp))],
            tables=[w.table("persona_comparison", df), w.table("persona_correlations", corr),
                    w.table("persona_strength", comp.strength_table())],
            notes=list(getattr(comp, "notes", []))[:5])
        return out
    return ctx.step(step, run)


def _persona_effects(df: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(persona / scorer) units with the steering and prompting effects over the baseline."""
    d = df[df["method"].isin(["prompt", "steer"])].dropna(subset=["shift"])
    piv = d.pivot_table(index=["persona", "scorer"], columns="method", values="shift", aggfunc="mean").dropna()
    units = [f"{p} / {s}" for p, s in piv.index]
    return units, piv["steer"].to_numpy(float), piv["prompt"].to_numpy(float)


# ------------------------------------------------------------------------------------------------ CAA sweeps
def caa_study(ctx: Any, m: Any, *, behaviours: Sequence[str] = ("myopic-reward", "sycophancy"),
              layers: Sequence[int] = (6, 9, 12, 15, 18), multipliers: Sequence[float] = (-2, -1, 0, 1, 2),
              n_build: int = 150, n_select: int = 30, n_test: int | None = None, seed: int = 0,
              step: str = "caa-sweep") -> dict:
    """Contrastive activation addition: layer x multiplier sweeps with the equal-norm random control.

    Internal: the steering multiplier along the CAA vector (and along a random direction of equal
    norm). Behavioural: p(answer matching the behaviour) from the shared A/B scorer on held-out
    items. Cross-check per (behaviour, multiplier) at each behaviour's selected layer: multiplier vs
    p(matching); expected positive. The random control's effect should contain 0.
    """
    def run(w):
        import pandas as pd

        from steering.plots import plot_sweep
        from steering.runs import run_caa_experiment
        from workbench.crosscheck import CrossCheck

        exp = run_caa_experiment(m, behaviours, layers=layers, multipliers=multipliers, n_build=n_build,
                                 n_select=n_select, n_test=n_test, seed=seed, progress=ctx.progress)
        sw = exp.sweep
        units, xs, ys, metrics, rows = [], [], [], {}, []
        for b in behaviours:
            s = sw.behaviour_summary(b)
            L = s["best_layer"]
            for mult, e in s["curve"].items():
                units.append(f"{b} x{mult:+g}")
                xs.append(mult)
                ys.append(e.value)
                rows.append({"behaviour": b, "layer": L, "multiplier": mult, "p_matching": e.value, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, **({"random_p": s["control_curve"][mult].value} if sw.control else {})})
            metrics[f"{b}: selected layer"] = L
            metrics[f"{b}: effect x{max(multipliers):g} - x{min(multipliers):g}"] = _est(s["effect"])
            metrics[f"{b}: monotone in the multiplier"] = s["monotone"]
            if sw.control:
                metrics[f"{b}: random-control effect"] = _est(s["control_effect"])
        cc = CrossCheck.from_measurements(units, xs, ys, internal_name="steering multiplier",
                                          behavioural_name="p(matching)", unit_name="behaviour x multiplier",
                                          seed=seed, provenance=_prov(m, seed, study="caa"))
        out = crosscheck_section(
            w, "caa", cc, "CAA steering: multiplier vs A/B behaviour",
            f"CAA vectors (Rimsky et al. 2024; letter-balanced mean differences at the answer token) for "
            f"{', '.join(behaviours)} at layers {list(layers)}; each behaviour's layer is selected on held-out "
            "pairs; steering acts on the tokens after the instruction. Cross-check: multiplier (internal "
            "intervention) vs p(matching) (behaviour, shared A/B scorer); expected positive. The random "
            "direction of equal norm is the control.",
            metrics=metrics, figures=[w.figure("caa_sweep", plot_sweep(sw))],
            tables=[w.table("caa_best_layer", pd.DataFrame(rows)), w.table("caa_sweep", sw.to_dataframe())])
        return out
    return ctx.step(step, run)


def persona_asr_study(ctx: Any, m: Any, *, personas: Sequence[str] = ("psychopathy", "power_seeking", "deception"),
                      layer: int = 12, coefficients: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0), n_harmful: int = 24,
                      harmful_source: str = "jailbreakbench", n_questions: int = 8, n_pairs: int = 3,
                      max_new_tokens: int = 32, seed: int = 0, step: str = "persona-asr") -> dict:
    """Steering toward undesirable personas: the coefficient against attack success on harmful requests.

    Internal: the steering coefficient along each persona vector (in units of the vector's norm
    matched to the persona prompt's KL). Behavioural: attack success rate (the shared ASR scorer:
    a completion that does not refuse counts as a success) on held-out harmful requests, with the
    equal-norm random direction as the control. Cross-check per (persona, coefficient); expected
    positive.
    """
    def run(w):
        import pandas as pd

        from steering.data import load_harmful
        from steering.personas import load_personas, persona_vectors
        from steering.plots import plot_generation_sweep
        from steering.sweeps import generation_sweep
        from workbench.crosscheck import CrossCheck
        from workbench.scorers import ASRScorer

        ps = load_personas(list(personas))
        pv = persona_vectors(m, ps, [layer], n_questions=n_questions, n_pairs=n_pairs, max_new_tokens=max_new_tokens,
                             seed=seed, progress=ctx.progress)
        prompts = load_harmful(harmful_source, n=n_harmful, seed=seed)
        ctx.record_data("persona_asr_prompts", prompts)
        units, xs, ys, rows, figs, metrics = [], [], [], [], [], {}
        for p in ps:
            gs = generation_sweep(m, pv[p.name], prompts, [layer], coefficients, ASRScorer(), max_new_tokens=max_new_tokens,
                                  seed=seed, progress=ctx.progress)
            for c in gs.coefficients:
                for kind in ("steer", "random"):
                    e = gs.estimate(layer, c, kind)
                    rows.append({"persona": p.name, "coefficient": c, "kind": kind, "asr": e.value, "ci_low": e.ci_low,
                                 "ci_high": e.ci_high})
                    if kind == "steer":
                        units.append(f"{p.name} x{c:g}")
                        xs.append(c)
                        ys.append(e.value)
            metrics[f"{p.name}: ASR change at x{max(coefficients):g}"] = _est(gs.effect(layer))
            metrics[f"{p.name}: random-control change"] = _est(gs.effect(layer, "random"))
            figs.append(w.figure(f"asr_{p.name}", plot_generation_sweep(gs)))
        cc = CrossCheck.from_measurements(units, xs, ys, internal_name="steering coefficient",
                                          behavioural_name="attack success rate", unit_name="persona x coefficient",
                                          seed=seed, provenance=_prov(m, seed, study="persona_asr", layer=layer))
        out = crosscheck_section(
            w, "persona_asr", cc, "Undesirable personas: steering coefficient vs attack success",
            f"Persona vectors for {', '.join(p.name for p in ps)} at layer {layer}, added while generating answers "
            f"to {len(prompts)} harmful requests ({harmful_source}), at coefficients {list(coefficients)}. Behaviour: "
            "attack success rate (shared ASR scorer, refusal-phrase judge) with Wilson CIs; the equal-norm random "
            "direction is the control. Expected positive.",
            metrics=metrics, figures=figs, tables=[w.table("persona_asr", pd.DataFrame(rows))])
        return out
    return ctx.step(step, run)


# ------------------------------------------------------------------------------------------------ preference
def preference_study(ctx: Any, m: Any, *, dimensions: Sequence[str] | None = None, split: str = "easy",
                     layers: Any = "all", limit: int | None = 150, n_resamples: int = 1000, seed: int = 0,
                     step: str = "preference-dimensions") -> dict:
    """Probes for the six reward-model preference dimensions, and the harmlessness probe vs the model's preference.

    Internal: per held-out HH-RLHF pair, the harmlessness probe's score of the chosen response minus
    the rejected one (best layer). Behavioural: the model's own per-token ``log p`` of the chosen
    response minus the rejected one given the dialogue (shared log-prob scorer). Expected: positive
    (a model whose representation separates harmless from harmful answers also prefers to say them).
    """
    def run(w):
        import pandas as pd

        from probe.plots import plot_preference
        from probe.preference import DIMENSIONS, build_preference_set, preference_probes
        from workbench.crosscheck import CrossCheck
        from workbench.scorers import continuation_logprobs

        dims = list(dimensions) if dimensions is not None else list(DIMENSIONS)
        res = preference_probes(m, dims, split=split, layers=layers, limit=limit, seed=seed, n_resamples=n_resamples,
                                progress=ctx.progress)
        table = res.summary_table()
        metrics = {}
        for d in dims:
            metrics[f"{d}: final-layer AUROC"] = _est(res.final[d])
            L, e = res.best[d]
            metrics[f"{d}: best layer {L} AUROC"] = _est(e)
        figs = [w.figure("preference", plot_preference(res))]
        tables = [w.table("preference_summary", table.reset_index() if table.index.name else table),
                  w.table("preference_layers", res.to_dataframe())]
        if "harmlessness" not in dims or split != "easy":
            w.section(Section("Preference dimensions", "Linear probes per dimension (MRMBench protocol).",
                              metrics=metrics, figures=figs, tables=tables, notes=list(res.notes)[:5]))
            return {}
        sw = res.sweeps["harmlessness"]
        L = res.best["harmlessness"][0]
        li = sw.layers.index(L)
        ds = build_preference_set("harmlessness", split, seed=seed, limit=limit)
        test = np.flatnonzero(np.asarray(sw.test, bool))
        scores = np.asarray(sw.test_scores["logistic"][li], float)
        exs = [ds.examples[i] for i in test]
        chat = bool(ds.chat) if ds.chat is not None else not isinstance(exs[0].prompt, str)
        lp = continuation_logprobs(m, [e.prompt for e in exs], [e.output for e in exs], chat=chat,
                                   **({"system": ds.system} if chat and ds.system else {}))
        per_tok = np.asarray(lp.mean_per_token, float)
        by = {}
        for e, s, l in zip(exs, scores, per_tok):
            by.setdefault(e.group, {})[e.label] = (s, l)
        pairs = [(g, v) for g, v in by.items() if 0 in v and 1 in v]
        units = [str(g) for g, _ in pairs]
        dint = np.array([v[1][0] - v[0][0] for _, v in pairs])
        dbeh = np.array([v[1][1] - v[0][1] for _, v in pairs])
        cc = CrossCheck.from_measurements(units, dint, dbeh, internal_name="probe score chosen - rejected",
                                          behavioural_name="log p per token chosen - rejected", unit_name="pair",
                                          seed=seed, provenance=_prov(m, seed, study="preference", layer=L))
        out = crosscheck_section(
            w, "preference", cc, "Preference dimensions: probes, and harmlessness vs the model's own preference",
            f"Linear probes for {', '.join(dims)} ({split} split; MRMBench protocol: read at the last token of "
            "input + response, final layer, plus a sweep over layers with controls). Cross-check over the "
            f"{len(units)} held-out HH-RLHF harmless pairs: the harmlessness probe's score difference at layer {L} "
            "(internal) against the model's per-token log p of the chosen over the rejected response "
            "(behaviour, shared log-prob scorer); expected positive.",
            metrics=metrics, figures=figs, tables=tables, notes=list(res.notes)[:5])
        return out
    return ctx.step(step, run)
