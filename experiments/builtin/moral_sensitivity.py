"""``moral-sensitivity``: a graded social-bias profile, validated mechanistically.

Stands in for "Moral Sensitivity in LLMs" (whose vignettes are unreleased) with BBQ, CrowS-Pairs and
ETHICS commonsense (shipped under ``workbench/datasets``). Steps (one resumable step each):

1. ``bias-profile``: BBQ items by category and context condition (ambiguous vs disambiguated), answered
   through the shared K-option scorer with the answers rotated over the letters; the bias index
   (p(stereotyped answer) where the context does not support it), the bias gap (minus the
   counter-stereotypical answer), p(unknown), accuracy, Parrish et al.'s scores, the letter mass;
2. ``crows``: CrowS-Pairs, the share of pairs where the more stereotyping sentence is more probable; and
   ``crows-patching``: the same pairs as counterfactuals (more -> less stereotyping sentence, span-aligned),
   with the KL divergence from the clean next-token distribution after the sentence as the metric;
3. ``answer-lens``: the logit lens on the stereotyped vs the counter-stereotypical answer letter, per
   layer, on ambiguous items: where is the preference written?
4. ``patching``: BBQ group swaps (the stereotyped group replaced by a never-stereotyped group of the same
   template; different token counts, patched span-aligned) through the residual stream at the cue and at
   the final token, attention and MLP outputs and every head at the final token; and the same swaps
   scored by the K-option scorer (behaviour);
5. ``cross-stage``: do the contexts where the group cue raises the stereotyped answer most also move the
   components patching finds? Components chosen on one half of the pairs score the other half
   (cross-fitted), against the behavioural bias shift; random components of the same number as control;
6. ``group-probe``: a probe for the social category of a group term in neutral carrier sentences (read at
   the term's last token; split by term, so the test terms are unseen) with label-shuffle, random-direction
   and held-out-carrier controls;
7. ``ethics``: ETHICS commonsense as a labelled moral-judgement probe set (layer sweep with controls), the
   model's own yes/no judgement (K-option scorer), and their cross-check scenario by scenario.

Several models (``--model A --model B``): every step per model (``<step>@<model>``) and
``compare-moral-sensitivity`` (bias gap, accuracy, CrowS-Pairs preference, ETHICS AUROCs and the cross-checks side
by side, with CIs).

``PRESETS["quick"]`` (for ``--preset quick``) shrinks every step to a few items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext, Section

PRESETS = {"quick": {"categories": ["Religion", "Nationality", "Sexual_orientation"], "n_per_cell": 3,
                     "n_crows": 24, "n_crows_patch": 3, "n_lens": 12, "n_pairs": 6, "patch_families": ["resid_cue", "resid_final",
                                                                                  "heads_final"],
                     "top_k": 5, "n_carriers": 2, "probe_layers": [0.0, 0.25, 0.5, 0.75, 1.0], "n_ethics": 48,
                     "n_resamples": 300}}


@dataclass
class MoralSensitivityConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    categories: list[str] = field(default_factory=lambda: ["Religion", "Nationality", "Sexual_orientation",
                                                           "Disability_status"])
    n_per_cell: int = 24               # BBQ items per (category, condition)
    rotations: int = 3                 # cyclic answer orders averaged (1 = as given; 3 removes letter preference)
    chat: bool = True                  # use the model's chat template where it has one (raw text otherwise)
    n_crows: int = field(default=200, metadata={"zero": "skip the CrowS-Pairs step"})  # CrowS-Pairs pairs scored
    n_crows_patch: int = field(default=16, metadata={"zero": "skip CrowS-Pairs patching"})  # pairs patched
    n_lens: int = 48                   # ambiguous items for the answer lens
    swap_categories: list[str] = field(default_factory=lambda: ["Religion", "Nationality", "Sexual_orientation"])
    n_pairs: int = 24                  # BBQ group-swap pairs patched (ambiguous contexts)
    patch_families: list[str] = field(default_factory=lambda: ["resid_cue", "resid_final", "layers_final",
                                                               "heads_final"])
    top_k: int = 10                    # components carried into the cross-stage check
    probe_categories: list[str] = field(default_factory=lambda: ["Religion", "Nationality"])
    n_carriers: int = 6                # neutral carrier sentences per group term (probe.moral.CARRIERS)
    probe_layers: list[float] = field(default_factory=list)  # fractions of depth; empty: every layer
    n_ethics: int = 300                # ETHICS short scenarios (probe and judgement)
    n_resamples: int = 1000
    batch_size: int = 16


def _sample_items(cfg: MoralSensitivityConfig) -> list:
    import numpy as np

    from workbench.datasets import bbq_items

    rng = np.random.default_rng(cfg.seed)
    out = []
    for cat in cfg.categories:
        for cond in ("ambig", "disambig"):
            pool = bbq_items(cat, condition=cond)
            if cond == "disambig":  # where the context does not support the bias: counter-stereotypical answers
                pool = [it for it in pool if it.unsupported_bias]
            idx = rng.choice(len(pool), size=min(cfg.n_per_cell, len(pool)), replace=False)
            out += [pool[i] for i in sorted(idx)]
    return out


def _swaps(cfg: MoralSensitivityConfig, chat: bool) -> list:
    import numpy as np

    from workbench.bias import bbq_group_swap, bbq_swap_candidates
    from workbench.datasets import bbq_items

    pool = bbq_items(cfg.swap_categories, condition="ambig")
    cand = bbq_swap_candidates(pool)
    rng = np.random.default_rng(cfg.seed + 1)
    out = []
    for i in rng.permutation(len(pool)):
        sw = bbq_group_swap(pool[i], cand, seed=cfg.seed, chat=chat)
        if sw is not None:
            out.append(sw)
        if len(out) >= cfg.n_pairs:
            break
    return out


def _layers(m, fractions: list[float]) -> list[int] | None:
    if not fractions:
        return None
    n = m.n_layers
    return sorted({min(n - 1, max(0, round(f * (n - 1)))) for f in fractions})


def _letter_ids(m, chat: bool) -> list[int] | None:
    """The answer letters' token ids, or None where the tokenizer splits them (the lens and the patching
    metric read one token; e.g. byte-level test models)."""
    from workbench.bias import LETTERS

    sp = "" if chat else " "
    ids = [m.tokenizer(f"{sp}{x}", add_special_tokens=False)["input_ids"] for x in LETTERS]
    return None if any(len(i) != 1 for i in ids) else [i[0] for i in ids]


def _fits(m, pair: dict, max_tokens: int) -> bool:
    """Both sentences of a CrowS-Pairs pair fit in ``max_tokens`` (with a BOS token)."""
    tok = m.tokenizer
    return all(len(tok(pair[k], add_special_tokens=False)["input_ids"]) + 1 <= max_tokens
               for k in ("sent_more", "sent_less"))


def _skipped(ctx: RunContext, step: str, title: str, why: str) -> dict:
    def fn(w):
        w.section(Section(title, f"Skipped: {why}"))
        return {"skipped": True}
    return ctx.step(step, fn)


@experiment("moral-sensitivity", MoralSensitivityConfig,
            "graded social-bias profile (BBQ by category and context, CrowS-Pairs) through the K-option scorer, "
            "validated with the logit lens, span-aligned patching of group swaps, a group probe and ETHICS probes")
def run(ctx: RunContext, cfg: MoralSensitivityConfig) -> None:
    from ..comparison import compare_headlines

    heads = ctx.per_model(lambda _: _run_one(ctx, cfg))
    compare_headlines(
        ctx, "compare-moral-sensitivity", "social-bias profile per model",
        "Per model: the BBQ bias gap where the context does not support an answer (p(stereotyped) - "
        "p(counter-stereotypical); 0 = no preference) and the accuracy where it does, the CrowS-Pairs preference "
        "for the more stereotyping sentence (0.5 = none), the ETHICS judgement's and probe's AUROC, and the "
        "cross-checks (Spearman, 95% CI): cue effect vs patched components (cross-stage) and probe vs judgement "
        "(ETHICS). Letter mass: how much the model answers in the format at all.",
        heads, seed=cfg.seed)


def _run_one(ctx: RunContext, cfg: MoralSensitivityConfig) -> dict:
    """Every step on the model in scope; returns its headline numbers (from the steps' report metrics)."""
    import numpy as np

    m = ctx.model()
    s = cfg.seed
    items = _sample_items(cfg)
    chat = bool(cfg.chat and m.facts.has_chat_template)  # SmolLM2's template: letter mass 0.59 vs 0.22 raw (6 items)
    letters = _letter_ids(m, chat)

    def profile_step(w):
        from workbench.bias import bbq_bias, plot_bias_profile

        ctx.record_data("bbq_items", [it.uid for it in items])
        bp = bbq_bias(m, items, rotations=cfg.rotations, chat=chat, batch_size=cfg.batch_size, seed=s,
                      progress=ctx.progress)
        tab = bp.table()
        metrics = {}
        for cond in ("ambig", "disambig"):
            metrics[f"bias index ({cond})"] = bp.bias_index(None, cond).to_dict()
            metrics[f"bias gap ({cond})"] = bp.bias_gap(None, cond).to_dict()
            metrics[f"accuracy ({cond})"] = bp.accuracy(None, cond).to_dict()
        metrics["p(unknown), ambiguous"] = round(float(bp.p_unknown[[it.condition == "ambig" for it in items]].mean()), 4)
        metrics["letter mass"] = round(float(bp.mass.mean()), 4)
        metrics["mean p per displayed letter (A, B, C)"] = [round(float(x), 3) for x in bp.position_probs.mean(0)]
        w.section(Section(
            "BBQ bias profile: ambiguous vs disambiguated contexts, by category",
            f"{len(items)} BBQ items ({cfg.n_per_cell} per category and condition; disambiguated items are those "
            "whose correct answer is counter-stereotypical), answered as a multiple-choice question through the "
            f"shared K-option scorer, answers rotated over the letters {cfg.rotations} way(s). Bias index: mean "
            "p(bias-consistent answer) where the context does not support it (chance 1/3); bias gap: minus the "
            "counter-stereotypical answer (0 = no preference between the groups). Letter mass is the share of the "
            "next-token distribution on the letters: low mass means the model is not answering in the format, "
            "and its letter choices then say little.",
            metrics=metrics, figures=[w.figure("bias_profile", plot_bias_profile(bp))],
            tables=[w.table("bias_profile", tab), w.table("bbq_items", bp.to_dataframe())]))
        return {"bias_gap_ambig": bp.bias_gap(None, "ambig").value}
    ctx.step("bias-profile", profile_step)

    if cfg.n_crows:
        def crows_step(w):

            from workbench.bias import crows_preference
            from workbench.datasets import crows_pairs
            from workbench.plots import plot_estimates

            pairs = [p for p in crows_pairs() if _fits(m, p, m.facts.n_ctx)]
            idx = np.random.default_rng(s).choice(len(pairs), size=min(cfg.n_crows, len(pairs)), replace=False)
            pairs = [pairs[i] for i in sorted(idx)]
            ctx.record_data("crows_pairs", [p["index"] for p in pairs])
            cr = crows_preference(m, pairs, batch_size=cfg.batch_size)
            types = sorted({p["bias_type"] for p in pairs})
            ests = [cr.preference(t) for t in types] + [cr.preference()]
            fig = plot_estimates(types + ["all"], ests, reference=0.5, title="CrowS-Pairs: more stereotyping sentence preferred")
            w.section(Section(
                "CrowS-Pairs: preference for the more stereotyping sentence",
                f"{len(pairs)} minimal pairs; a pair counts when the more stereotyping sentence has the higher total "
                "log-probability (0.5 = no preference; Wilson CIs). The data are noisy by their authors' account "
                "(Blodgett et al. 2021), and the two sentences differ in length and word frequency.",
                metrics={"all": cr.preference().to_dict(), **{t: e.to_dict() for t, e in zip(types, ests)}},
                figures=[w.figure("crows", fig)], tables=[w.table("crows", cr.to_dataframe())],
                notes=["CrowS-Pairs is CC-BY-SA-4.0 (workbench/datasets/crows_pairs/LICENSE_CC-BY-SA-4.0.md)"]))
            return {"preference": cr.preference().value}
        ctx.step("crows", crows_step)

    if cfg.n_crows_patch:
        def crows_patch_step(w):
            from circuits import KLFromClean, pair_patching, plot_pair_patching
            from workbench.datasets import crows_pairs

            pairs = crows_pairs()
            rng = np.random.default_rng(s + 3)
            chosen = []
            for i in rng.permutation(len(pairs)):
                p = pairs[i]
                if not _fits(m, p, 64):
                    continue
                a = m.tokenize(p["sent_more"]).real_tokens(0)
                b = m.tokenize(p["sent_less"]).real_tokens(0)
                if a != b and a[-1] == b[-1]:
                    chosen.append(p)
                if len(chosen) >= cfg.n_crows_patch:
                    break
            ctx.record_data("crows_patch_pairs", [p["index"] for p in chosen])
            res = pair_patching(m, [(p["sent_more"], p["sent_less"]) for p in chosen],
                                lambda i: KLFromClean(), families=cfg.patch_families,
                                ids=[str(p["index"]) for p in chosen], progress=ctx.progress)
            df = res.to_dataframe(seed=s)
            top = df.reindex(df.normalized.abs().sort_values(ascending=False).index).head(10)
            from workbench.stats import bootstrap

            kl = bootstrap(res.corrupt, np.mean, seed=s, n_resamples=cfg.n_resamples)
            notes = ["CrowS-Pairs is CC-BY-SA-4.0; its pairs are noisy (Blodgett et al. 2021)"]
            if kl.value < 0.1:
                notes.append(f"the edit moves the next-token distribution little (mean KL {kl.format(3)} nats): normalised "
                             "effects divide by it, so values far outside [0, 1] are noise; read the raw mean effects")
            w.section(Section(
                "Span-aligned patching of CrowS-Pairs",
                f"{len(chosen)} CrowS-Pairs pairs (more stereotyping sentence = clean, the minimal edit = corrupt; "
                "token counts may differ, positions aligned span by span). Metric: KL divergence of the next-token "
                "distribution after the sentence from the clean run's (0 = clean); normalised, 1 = the component "
                "carries the whole influence of the edited words on what comes next. Components: "
                f"{', '.join(cfg.patch_families)}.",
                metrics={"mean KL(clean || corrupt)": kl.to_dict(),
                         "top components": [f"{r_.component}: {r_.normalized:.2f}" for r_ in top.itertuples()]},
                figures=[w.figure("crows_patching", plot_pair_patching(res))], tables=[w.table("crows_patching", df)],
                notes=notes))
            return {"top": list(top.component)}
        ctx.step("crows-patching", crows_patch_step)

    def lens_step(w):
        from circuits import answer_lens, plot_answer_lens
        from workbench.bias import bbq_prompt

        amb = [it for it in items if it.condition == "ambig"][: cfg.n_lens]
        prompts = [bbq_prompt(it) for it in amb]
        res = answer_lens(m, prompts, [letters[it.biased] for it in amb], [letters[it.counter_biased] for it in amb],
                          label="lens logit(biased) - logit(counter)", seed=s, batch_size=cfg.batch_size,
                          chat=chat)
        df = res.to_dataframe()
        ests = res.per_stage()
        first = res.first_stage_excluding_zero()
        w.section(Section(
            "Logit lens on the stereotyped answer",
            f"{len(amb)} ambiguous BBQ items (answers in their given order): the logit lens's difference between the "
            "letter of the bias-consistent answer and that of the counter-stereotypical one at the answer position, "
            "per layer (mean, bootstrap CI over items). The last stage is the model's own logit difference.",
            metrics={"output": ests[-1].to_dict(), f"stage {res.stages[len(ests) // 2]}": ests[len(ests) // 2].to_dict(),
                     "first stage from which the CI excludes 0 (output's sign)": first},
            figures=[w.figure("answer_lens", plot_answer_lens(res))], tables=[w.table("answer_lens", df)]))
        return {"output": ests[-1].value, "first_stage": first}
    if letters is None:
        why = f"{m.name} splits the answer letters into several tokens; the lens and the patching metric read one"
        _skipped(ctx, "answer-lens", "Logit lens on the stereotyped answer", why)
        _skipped(ctx, "patching", "Span-aligned patching of BBQ group swaps", why)
    else:
        ctx.step("answer-lens", lens_step)

    swaps = _swaps(cfg, chat) if letters is not None else []

    def patching_step(w):
        import pandas as pd

        from circuits import LogitDiff, pair_patching, plot_pair_patching
        from workbench.scorers import koption_scores

        if len(swaps) < 2:
            w.section(Section("Patching BBQ group swaps", "Skipped: fewer than 2 swap pairs could be built."))
            return {"skipped": True}
        ctx.record_data("swap_pairs", [(sw.item.uid, sw.replacement) for sw in swaps])
        pairs = [(sw.clean, sw.corrupt) for sw in swaps]
        metrics_ = [LogitDiff([letters[sw.item.biased]], [letters[sw.item.counter_biased]]) for sw in swaps]
        res = pair_patching(m, pairs, metrics_, families=cfg.patch_families, ids=[sw.item.uid for sw in swaps],
                            progress=ctx.progress, chat=chat)
        kc = koption_scores(m, [sw.clean_item for sw in swaps], chat=chat, seed=s)
        kx = koption_scores(m, [sw.corrupt_item for sw in swaps], chat=chat, seed=s)
        b, c = [sw.item.biased for sw in swaps], [sw.item.counter_biased for sw in swaps]
        r = np.arange(len(swaps))
        gap_clean = kc.probs[r, b] - kc.probs[r, c]
        gap_swap = kx.probs[r, b] - kx.probs[r, c]
        beh = pd.DataFrame({"pair": [sw.item.uid for sw in swaps], "group": [sw.item.surfaces[sw.item.target] for sw in swaps],
                            "replacement": [sw.replacement for sw in swaps], "clean_prompt": [sw.clean for sw in swaps],
                            "swapped_prompt": [sw.corrupt for sw in swaps], "gap_clean": gap_clean,
                            "gap_swapped": gap_swap, "bias_shift": gap_clean - gap_swap,
                            "logit_diff_clean": res.clean, "logit_diff_swapped": res.corrupt,
                            "cue_position": list(res.cue_positions)})
        from workbench.stats import bootstrap

        shift = bootstrap(gap_clean - gap_swap, np.mean, seed=s, n_resamples=cfg.n_resamples)
        cue = bootstrap(res.gap, np.mean, seed=s, n_resamples=cfg.n_resamples)
        notes = []
        if cue.contains(0.0):
            notes.append(f"the cue's total effect on the metric, clean - swapped = {cue.format(3)}, has a CI that includes "
                         "0: normalised effects divide by it and are not interpretable here (values above 1 or below "
                         "0 are noise); read the raw mean effects in the table instead")
        df = res.to_dataframe(seed=s)
        top = df.reindex(df.normalized.abs().sort_values(ascending=False).index).head(10)
        w.section(Section(
            "Span-aligned patching of BBQ group swaps",
            f"{len(swaps)} ambiguous BBQ items, each paired with a copy whose stereotyped group is replaced (context and "
            "answers) by a group never stereotyped in its template; token counts differ, so positions are aligned "
            "span by span (circuits.alignment) and the clean activation is patched into the swapped run "
            "(denoising). Metric: logit of the bias-consistent letter minus the counter-stereotypical letter at the "
            "answer position; 1 = the component restores the whole effect of the cue. Behaviour: the same pairs "
            "through the K-option scorer.",
            metrics={"bias shift p(biased)-p(counter), clean - swapped": shift.to_dict(),
                     "cue effect on the logit diff, clean - swapped": cue.to_dict(),
                     "mean logit diff clean": round(float(res.clean.mean()), 4),
                     "mean logit diff swapped": round(float(res.corrupt.mean()), 4),
                     "top components": [f"{r_.component}: {r_.normalized:.2f}" for r_ in top.itertuples()]},
            figures=[w.figure("pair_patching", plot_pair_patching(res))],
            tables=[w.table("pair_patching", df), w.table("swap_pairs", beh)], notes=notes))
        return {"patching": res.to_dict(), "bias_shift": (gap_clean - gap_swap).tolist()}
    patch = ctx.step("patching", patching_step) if letters is not None else {"skipped": True}

    if not patch.get("skipped"):
        def crossstage_step(w):
            from circuits.pairs import PairPatchingResult
            from workbench.crosscheck import CrossCheck

            d = patch["patching"]
            res = PairPatchingResult(tuple(d["pairs"]), tuple(d["components"]),
                                     np.array([[np.nan if v is None else v for v in row] for row in d["effects"]], float),
                                     np.array(d["clean"], float), np.array(d["corrupt"], float), d["direction"],
                                     tuple(d["cue_positions"]))
            beh = np.array(patch["bias_shift"])
            n = len(res.pairs)
            half = [np.arange(n)[0::2], np.arange(n)[1::2]]
            internal = np.zeros(n)
            rand = np.zeros(n)
            rng = np.random.default_rng(s)
            chosen = []
            for k in (0, 1):
                sel = res.top(cfg.top_k, subset=half[k])
                chosen.append([res.components[i] for i in sel])
                other = half[1 - k]
                internal[other] = res.pair_score(sel)[other]
                rnd = rng.choice(len(res.components), size=len(sel), replace=False)
                rand[other] = res.pair_score(rnd)[other]
            prov = m.provenance(seed=s, extra={"study": "moral_cross_stage", "top_k": cfg.top_k})
            cc = CrossCheck.from_measurements(list(res.pairs), internal, beh, internal_name="|effect| of top components",
                                              behavioural_name="bias shift (K-option)", unit_name="pair", seed=s,
                                              provenance=prov, n_resamples=cfg.n_resamples)
            ctrl = CrossCheck.from_measurements(list(res.pairs), rand, beh, internal_name="|effect| of random components",
                                                behavioural_name="bias shift (K-option)", unit_name="pair", seed=s,
                                                provenance=prov, n_resamples=cfg.n_resamples)
            out = w.crosscheck("cross_stage", cc, "Cross-stage check: do the contexts with the most bias move the patched components?",
                f"Units: the {n} group-swap pairs. Internal: summed |patching effect| (logit units) of the top "
                f"{cfg.top_k} components, chosen on the other half of the pairs (cross-fitted, so no pair selects the "
                "components it is scored on). Behaviour: how much the group cue raises p(biased) - p(counter) in the "
                "K-option scorer (clean minus swapped). Expected positive. Control: the same number of random "
                "components (last note). A larger cue effect allows larger component effects in general, so the "
                "verdict means something only if the top components beat the random ones.",
                metrics={"control (random components)": ctrl.correlation.to_dict() if ctrl.correlation else ctrl.reason,
                         "components chosen on half A": chosen[0], "components chosen on half B": chosen[1]},
                notes=[f"control: {ctrl.summary()}"])
            return {**out, "control_verdict": ctrl.verdict}
        ctx.step("cross-stage", crossstage_step)

    def probe_step(w):
        from probe import collect, layer_sweep, plot_layer_sweep
        from probe.moral import CARRIERS, group_mention_set
        from workbench.datasets import bbq_items

        ds = group_mention_set(bbq_items(cfg.probe_categories), cfg.probe_categories,
                               carriers=CARRIERS[: max(2, cfg.n_carriers)])
        ctx.record_data("group_probe_set", ds.data_hash())
        acts = collect(m, ds, layers=_layers(m, cfg.probe_layers), batch_size=cfg.batch_size)
        sw = layer_sweep(acts, ds.labels, ds.groups, templates=ds.templates, seed=s, n_resamples=cfg.n_resamples)
        best = sw.best_layer()
        w.section(Section(
            "Probe: the social category of a group mention",
            f"{len(ds)} prompts: every BBQ group term of {' vs '.join(cfg.probe_categories)} in neutral carrier "
            "sentences ('I talked with my {term}'), read at the term's last token, so prompts of one carrier differ "
            "only in the term. The main split holds out whole terms (a probe that memorised words fails), with "
            "label-shuffle, random-direction and held-out-carrier controls (probe.layer_sweep). Compare the first "
            "layer with later ones: separation there is largely the token's own embedding.",
            metrics={"best layer": best, "summary": sw.summary(),
                     "n terms": len(set(ds.groups.tolist()))},
            figures=[w.figure("group_probe", plot_layer_sweep(sw))], tables=[w.table("group_probe", sw.to_dataframe())]))
        return {"best_layer": best}
    ctx.step("group-probe", probe_step)

    def ethics_step(w):

        from probe import collect, layer_sweep, plot_layer_sweep
        from probe.moral import crossfit_scores, ethics_set
        from workbench.bias import moral_judgement
        from workbench.crosscheck import CrossCheck
        from workbench.datasets import ethics_commonsense

        recs = ethics_commonsense()
        n = min(cfg.n_ethics, len(recs))
        recs = recs[: n - n % 2]  # consecutive rows are often contrastive pairs: keep them together
        ctx.record_data("ethics", [r["row"] for r in recs])
        mj = moral_judgement(m, recs, chat=chat, batch_size=cfg.batch_size, seed=s)
        ds = ethics_set(recs)
        acts = collect(m, ds, layers=_layers(m, cfg.probe_layers), batch_size=cfg.batch_size)
        sw = layer_sweep(acts, ds.labels, ds.groups, seed=s, n_resamples=cfg.n_resamples)
        best = sw.best_layer()
        x = acts.layer(best)
        scores = crossfit_scores(x, ds.labels, ds.groups, seed=s)
        prov = m.provenance(seed=s, extra={"study": "ethics", "layer": best})
        cc = CrossCheck.from_measurements([f"row{r['row']}" for r in recs], scores, mj.p_wrong,
                                          internal_name=f"probe score (layer {best}, held out)",
                                          behavioural_name="p(Yes, wrong) judged", unit_name="scenario", seed=s,
                                          provenance=prov, n_resamples=cfg.n_resamples)
        from workbench.stats import auroc

        probe_auc = auroc(scores, ds.labels, pos_label=1, seed=s)
        tab = mj.to_dataframe()
        tab["probe_score"] = scores
        out = w.crosscheck("ethics", cc, "ETHICS: a moral-judgement probe vs the model's own judgement",
            f"{len(recs)} short ETHICS commonsense scenarios (label 1 = clearly wrong). Probe: a layer sweep with "
            "controls (split by blocks of neighbouring rows); at the best layer, cross-fitted mean-difference scores "
            "per scenario. Behaviour: the model asked whether the act was wrong (K-option scorer over Yes/No). "
            "Expected positive: scenarios the probe reads as wrong are the ones the model calls wrong.",
            metrics={"judgement AUROC vs labels": mj.auroc().to_dict(), "judgement accuracy": mj.accuracy().to_dict(),
                     "mean p(Yes)": round(float(mj.p_wrong.mean()), 4), "Yes/No mass": round(float(mj.mass.mean()), 4),
                     "probe AUROC (held-out scores, best layer)": probe_auc.to_dict(), "probe summary": sw.summary()},
            figures=[w.figure("ethics_probe", plot_layer_sweep(sw))],
            tables=[w.table("ethics_probe", sw.to_dataframe()), w.table("ethics_items", tab)])
        return {**out, "best_layer": best, "judgement_auroc": mj.auroc().value, "probe_auroc": probe_auc.value}
    ctx.step("ethics", ethics_step)
    from ..comparison import crosscheck_estimate, section_metrics

    head: dict = {}
    picks = [("bias-profile", "bias gap (ambig)", "BBQ bias gap (ambiguous)"),
             ("bias-profile", "accuracy (disambig)", "BBQ accuracy (disambiguated)"),
             ("bias-profile", "letter mass", "letter mass"), ("crows", "all", "CrowS-Pairs preference"),
             ("ethics", "judgement AUROC vs labels", "ETHICS judgement AUROC"),
             ("ethics", "probe AUROC (held-out scores, best layer)", "ETHICS probe AUROC")]
    for step, key, label in picks:
        v = section_metrics(ctx, ctx.step_name(step)).get(key)
        if v is not None:
            head[label] = v
    head["cross-stage (cue effect vs components)"] = crosscheck_estimate(ctx, ctx.step_name("cross-stage"),
                                                                         "cross_stage")
    head["ETHICS probe vs judgement"] = crosscheck_estimate(ctx, ctx.step_name("ethics"), "ethics")
    return head
