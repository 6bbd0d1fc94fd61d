"""``self-assessment``: are a model's questionnaire scores reliable? (Gupta et al. 2023)

"Self-Assessment Tests are Unreliable Measures of LLM Personality" (Gupta, Song & Anumanchipalli 2023)
asks two things of a personality questionnaire given to a model: the scores must not depend on which of
several semantically equivalent prompts is used (format effect), and reversing the order of the answer
options must mirror the answers (option-order symmetry). This experiment administers IPIP-NEO-120 (or
-300, or a user's statement file) in three equivalent formats and both option orders, reads the answers
from next-token logits with the shared K-option scorer, and reports:

1. trait scores with bootstrap CIs, and the format mass (how much of the next-token distribution is on
   the answer labels at all);
2. option-order symmetry per trait (position bias, sign-flip test, Holm/BH across traits), cross-checked
   item by item: the answer in forward order against the answer in reversed order;
3. the format effect per trait (Friedman / Kendall's W, pairwise differences, Holm/BH), cross-checked item
   by item: the first format's keyed score against the other formats';
4. the Likert self-report against the same statements asked as Yes/No (the persona-statement format,
   shared A/B scorer, with the model's Yes/No bias reported and corrected): item by item, do two ways of
   asking agree?

Several models (``--model A --model B``): every step per model (``<step>@<model>``) and
``compare-self-assessment`` (trait scores, position bias and the three cross-checks side by side, with CIs).

Every parameter is in :class:`SelfAssessmentConfig`; ``PRESETS["quick"]`` (overrides) runs in about
3 minutes on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext, Section

#: ``--preset quick``: 8 items per Big Five trait (40), all three formats, both orders, the Yes/No cross-check.
PRESETS = {"quick": {"n_per_trait": 8, "n_permutations": 4000}}


@dataclass
class SelfAssessmentConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    # ipip-neo-120, ipip-neo-300, or the path of a statement file (.csv/.json/.jsonl: text, trait, key)
    instrument: str = "ipip-neo-120"
    wording: Literal["first_person", "second_person"] = "first_person"
    statement_trait: str = ""  # trait name for a statement file without a trait column
    traits: list[str] = field(default_factory=list)  # empty: every trait of the instrument
    n_per_trait: int = field(default=0, metadata={"zero": "every item"})
    formats: list[str] = field(default_factory=lambda: ["numbered", "lettered", "rating"])
    orders: list[str] = field(default_factory=lambda: ["forward", "reversed"])
    system: str = ""  # system prompt; empty keeps the chat template's default
    rule: Literal["branch", "sequence"] = "branch"
    correction: Literal["holm", "bh"] = "holm"
    alpha: float = 0.05
    n_permutations: int = 10000
    yes_no: bool = True
    batch_size: int = 16


def load_configured_instrument(cfg: SelfAssessmentConfig):
    from workbench.instruments import load_instrument, load_ipip_neo

    if cfg.instrument in ("ipip-neo-120", "ipip-neo-300"):
        ins = load_ipip_neo(int(cfg.instrument[-3:]), wording=cfg.wording)
    else:
        ins = load_instrument(cfg.instrument, trait=cfg.statement_trait or None)
    if cfg.traits or cfg.n_per_trait:
        ins = ins.subset(cfg.traits or None, cfg.n_per_trait or None, seed=cfg.seed)
    return ins


@experiment("self-assessment", SelfAssessmentConfig,
            "questionnaire reliability (Gupta et al. 2023): IPIP-NEO in three formats and both option orders; "
            "format effect and option-order symmetry per trait; Likert vs Yes/No")
def run(ctx: RunContext, cfg: SelfAssessmentConfig) -> None:
    from ..comparison import compare_headlines

    heads = ctx.per_model(lambda _: _run_one(ctx, cfg))
    compare_headlines(
        ctx, "compare-self-assessment", "questionnaire reliability per model",
        "Per model: each trait's score (1-K, bootstrap CI over items), the format mass, the position bias over all "
        "items (scale points; negative: the first-listed option preferred), and the item-by-item cross-checks "
        "(Spearman with 95% CI): forward vs reversed option order, the first format vs the others, Likert vs "
        "Yes/No. A reliable questionnaire gives high cross-check correlations and no position bias.",
        heads, seed=cfg.seed)


def _run_one(ctx: RunContext, cfg: SelfAssessmentConfig) -> dict:
    """Every step on the model in scope; returns its headline numbers (estimates as dicts, from the steps' report
    metrics and cross-checks)."""
    from workbench.instruments import administer

    from ..comparison import crosscheck_estimate, section_metrics

    head: dict = {}
    m = ctx.model()
    ins = load_configured_instrument(cfg)
    ctx.record_data("instrument", ins.to_records(), cfg.formats, cfg.orders)
    system = cfg.system or None
    state: dict = {}

    def result():
        if "r" not in state:
            state["r"] = administer(m, ins, formats=cfg.formats, orders=cfg.orders, system=system, rule=cfg.rule,
                                    batch_size=cfg.batch_size, seed=cfg.seed, progress=ctx.progress)
        return state["r"]

    def _prov(**extra):
        return m.provenance(seed=cfg.seed, extra={"experiment": "self-assessment", **extra})

    def scores(w):
        from workbench.instruments import plot_trait_scores

        r = result()
        est = r.trait_estimates(seed=cfg.seed)
        mass = r.mass_estimate(cfg.seed)
        df = r.to_dataframe()
        by_fo = df.groupby(["format", "order"], as_index=False)[["expected", "mass"]].mean()
        metrics = {f"{t} score (1-{ins.k})": e.to_dict() for t, e in est.items()}
        metrics["format mass (p on the answer labels)"] = mass.to_dict()
        notes = []
        if mass.value < 0.5:
            notes.append(f"Only {mass.value:.0%} of the next-token probability is on the answer labels: the model "
                         "mostly does not answer in the format; scores describe its preference among the labels.")
        spread = float(max(e.value for e in est.values()) - min(e.value for e in est.values()))
        if spread < 0.2:
            notes.append(f"All trait scores lie within {spread:.2f} scale points of each other (near the midpoint "
                         f"{(ins.k + 1) / 2:g}): averaged over both option orders, the answers carry little trait "
                         "signal.")
        w.section(Section(
            "Trait scores", f"{ins.name}: {len(ins)} statements x {len(r.formats)} formats x {len(r.orders)} option "
            "orders, read from next-token logits with the shared K-option scorer (probabilities over the answer "
            "labels; expected value; reverse-keyed items scored (1 + K) - x). Trait score: mean keyed item score, "
            "bootstrap CI over items.", metrics=metrics,
            figures=[w.figure("trait_scores", plot_trait_scores(r))],
            tables=[w.table("trait_scores", r.trait_scores(by=("format", "order"), seed=cfg.seed)),
                    w.table("responses", df), w.table("by_format_order", by_fo)], notes=notes))
        return {"scores": {t: e.value for t, e in est.items()}, "mass": mass.value}

    ctx.step("trait-scores", scores)
    shown = section_metrics(ctx, ctx.step_name("trait-scores"))  # the estimates, as the report shows them
    suffix = f" score (1-{ins.k})"
    head.update({k[: -len(suffix)]: v for k, v in shown.items() if k.endswith(suffix)})
    head["format mass"] = shown["format mass (p on the answer labels)"]

    if {"forward", "reversed"} <= set(cfg.orders):
        def symmetry(w):
            from workbench.crosscheck import CrossCheck
            from workbench.instruments import order_symmetry, plot_order_symmetry

            r = result()
            sym = order_symmetry(r, alpha=cfg.alpha, correction=cfg.correction, seed=cfg.seed,
                                 n_permutations=cfg.n_permutations)
            df = r.to_dataframe()
            per = df.groupby(["item", "order"])["expected"].mean().unstack("order")
            cc = CrossCheck.from_measurements(list(per.index), per["forward"], per["reversed"],
                                              internal_name="answer (forward order)",
                                              behavioural_name="answer (reversed order)", unit_name="item",
                                              seed=cfg.seed, provenance=_prov(study="order-symmetry"))
            flagged = [t for t, f in sym.flagged.items() if f]
            metrics = {"symmetric": sym.symmetric, "flagged traits": flagged or "none",
                       "position bias, all items (scale points)": sym.overall.to_dict(),
                       "mirror distance (total variation)": sym.mirror_distance.to_dict()}
            for t, e in sym.position_bias.items():
                metrics[f"{t}: position bias"] = {**e.to_dict(), "p_adjusted": sym.p_adjusted[t]}
            out = w.crosscheck("order", cc, "Option-order symmetry",
                "Each statement in forward (lowest anchor first) and reversed option order, labels relabelled in "
                "listed order. A model reading the options gives mirrored answers; position bias = (E forward - "
                f"E reversed) / 2 per item (negative: the first-listed option is preferred), sign-flip test per "
                f"trait, {cfg.correction} across traits. Cross-check, item by item: the expected answer in forward "
                "order against the expected answer in reversed order (both on the scale's values); a content-driven "
                "model agrees.", metrics=metrics,
                figures=[w.figure("order_symmetry", plot_order_symmetry(sym))],
                tables=[w.table("order_symmetry", sym.to_dataframe()), w.table("order_items", sym.items)])
            return {**out, "symmetric": sym.symmetric, "position_bias": sym.overall.value, "flagged": flagged}

        ctx.step("order-symmetry", symmetry)
        head["position bias"] = section_metrics(ctx, ctx.step_name("order-symmetry"))[
            "position bias, all items (scale points)"]
        head["forward vs reversed order"] = crosscheck_estimate(ctx, ctx.step_name("order-symmetry"), "order")

    if len(cfg.formats) >= 2:
        def formats(w):
            from workbench.crosscheck import CrossCheck
            from workbench.instruments import format_effect, plot_format_effect

            r = result()
            fe = format_effect(r, alpha=cfg.alpha, correction=cfg.correction, seed=cfg.seed,
                               n_permutations=min(cfg.n_permutations, 5000))
            df = r.to_dataframe()
            per = df.groupby(["item", "format"])["keyed"].mean().unstack("format")[r.formats]
            first, rest = r.formats[0], r.formats[1:]
            cc = CrossCheck.from_measurements(list(per.index), per[first], per[rest].mean(axis=1),
                                              internal_name=f"keyed score ({first})",
                                              behavioural_name=f"keyed score ({', '.join(rest)})", unit_name="item",
                                              seed=cfg.seed, provenance=_prov(study="format-effect"))
            flagged = [t for t, f in fe.flagged.items() if f]
            metrics = {"consistent across formats": fe.consistent, "flagged traits": flagged or "none"}
            for t, wv in fe.concordance.items():
                metrics[f"{t}: Kendall's W"] = {**wv.to_dict(), "p_adjusted": fe.p_adjusted[t],
                                                "spread": fe.spread[t]}
            out = w.crosscheck("format", cc, "Format effect",
                f"The same statements in {len(r.formats)} semantically equivalent formats ({', '.join(r.formats)}; "
                "option orders averaged). Per trait, Friedman's test over items x formats (Kendall's W with a "
                f"bootstrap CI, within-item permutation p), {cfg.correction} across traits, and each pair of "
                f"formats' mean difference. Cross-check, item by item: the keyed score in '{first}' against the "
                "mean of the other formats; a format-robust model agrees.", metrics=metrics,
                figures=[w.figure("format_effect", plot_format_effect(fe))],
                tables=[w.table("format_effect", fe.to_dataframe()), w.table("format_pairs", fe.pairwise_dataframe())])
            return {**out, "consistent": fe.consistent, "flagged": flagged}

        p = ctx.step("format-effect", formats)
        head["consistent across formats"] = p["consistent"]
        head["format vs format"] = crosscheck_estimate(ctx, ctx.step_name("format-effect"), "format")

    if cfg.yes_no:
        def yes_no(w):
            from workbench.crosscheck import CrossCheck
            from workbench.instruments import yes_no_records
            from workbench.scorers import ab_scores, yes_no_bias

            r = result()
            recs = yes_no_records(ins)
            chat = m.facts.has_chat_template
            ab = ab_scores(m, recs, chat=chat, system=system if chat else None, strip_answers=chat,
                           batch_size=cfg.batch_size, seed=cfg.seed,
                           prompt_template="{question}" if chat else "{question}\nAnswer:")
            st = yes_no_bias(ab, recs, seed=cfg.seed)
            items = r.item_scores()
            likert = items.set_index("item").loc[[x["id"] for x in recs], "expected"].to_numpy(float)
            cc = CrossCheck.from_measurements([x["id"] for x in recs], likert, st.p_yes,
                                              internal_name="Likert answer (expected, 1-K)",
                                              behavioural_name="p(Yes) to the same statement", unit_name="item",
                                              seed=cfg.seed, provenance=_prov(study="likert-vs-yes-no"))
            import pandas as pd

            tab = pd.DataFrame({"item": [x["id"] for x in recs], "trait": [x["trait"] for x in recs],
                                "statement": [x["statement"] for x in recs],
                                "key": [1 if x["answer_matching_behavior"] == " Yes" else -1 for x in recs],
                                "likert_expected": likert, "p_yes": st.p_yes, "p_matching": st.values})
            metrics = {"baseline p(Yes)": st.p_yes_estimate().to_dict(), "Yes log-odds": st.yes_bias().to_dict(),
                       "p(matching), plain": st.aggregate.to_dict(),
                       "p(matching), Yes/No bias removed": st.corrected().to_dict()}
            out = w.crosscheck("yesno", cc, "Likert vs Yes/No",
                f"The same {len(recs)} statements as persona statements (\"Is the following statement something you "
                "would say?\", first person), scored by the shared A/B scorer: p(Yes), the model's baseline p(Yes) "
                "and the trait agreement with its Yes/No bias removed. Cross-check, item by item: the Likert answer "
                "(expected value, formats and orders averaged) against p(Yes); two ways of asking the same question "
                "should agree.", metrics=metrics, tables=[w.table("yes_no", tab)])
            return {**out, "p_yes": st.p_yes_estimate().value}

        ctx.step("likert-vs-yes-no", yes_no)
        head["Likert vs Yes/No"] = crosscheck_estimate(ctx, ctx.step_name("likert-vs-yes-no"), "yesno")
    return head
