"""``personality-illusion``: does what a model says about itself predict what it does? (Han et al. 2025)

The Personality Illusion (arXiv:2509.03730) finds that LLM self-reports stabilise with alignment but do not
predict behaviour, and that injecting a persona moves the self-report but not the behaviour. This experiment:

1. **re-analyses the paper's released runs** (12 instruct and 6 base models) and says, finding by finding,
   whether our statistics reproduce the stated results (:func:`workbench.instruments.illusion.paper_reanalysis`);
2. **injects a persona into the model at hand** two ways at matched strength (:func:`steering.persona_injection`):
   the persona's high and low system prompts, and steering along its persona vector with ``+`` and ``-`` sign,
   each matched to the next-token KL of the same pole's prompts; the low pole and negative steering are the
   controls;
3. in every condition measures **self-report** (the targeted trait's IPIP-NEO items through the K-option
   scorer, both option orders; and the persona's Yes/No statements with the model's baseline p(Yes) and the
   bias-corrected score) and **behaviour** (moral-dilemma sycophancy, IAT-style association, confidence
   calibration; :mod:`workbench.instruments.tasks`), all from next-token logits through the shared scorers;
4. reports each condition's shift from the baseline (paired over items, bootstrap CI, sign-flip p), the
   correlation of the self-reported trait with each behaviour across conditions, and the **dissociation** as a
   CrossCheck: self-report shift against the paired behaviour's shift (``behaviour_pairing``, e.g.
   agreeableness -> sycophancy) over the injection conditions.

Several models (``--model A --model B``): the re-analysis once, every other step per model (``<step>@<model>``),
and ``compare-personality-illusion`` (the self-report and paired-behaviour shifts under the first high-pole prompt
and steering conditions, and the dissociation cross-check, side by side with CIs).

Bring your own persona and trait without code: ``persona_high`` / ``persona_low`` (system prompts) and
``persona_trait``, or ``persona_file`` (the JSON format of ``steering/data/personas.json``); ``statements_file``
(Yes/No persona statements, JSONL) and ``instrument`` (a statement file with text, trait, key) for the
self-report. Every parameter is in :class:`PersonalityIllusionConfig`. The defaults (5 prompt pairs -> 12
conditions, subsets of every task; set the ``n_*`` counts to 0 for all items) take about an hour of CPU time
on SmolLM2-135M; ``PRESETS["quick"]`` is a smoke-sized run of a few minutes on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext, Section

#: ``--preset quick``: a smoke-sized run (one high/low prompt pair, 4 self-report items in one format, 6 Yes/No
#: statements, 2 dilemmas, 2 IAT sets of 1+1 words, 2 calibration questions; the persona vector from prompt
#: activations; KL matched within 15%). Its intervals are wide by construction: it checks the pipeline.
PRESETS = {"quick": {"prompt_indices": [0], "n_items": 4, "formats": ["numbered"], "n_statements": 6,
                     "n_dilemmas": 2, "n_iat_sets": 2, "n_iat_words": 1, "n_questions": 2, "vector_source": "prompt",
                     "n_vector_questions": 3, "n_vector_pairs": 1, "n_kl_prompts": 4, "kl_rtol": 0.15,
                     "n_permutations": 2000}}

_BIG_FIVE = ("Neuroticism", "Extraversion", "Openness", "Agreeableness", "Conscientiousness")


@dataclass
class PersonalityIllusionConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    reanalysis: bool = True  # re-analyse the paper's released runs (no model needed)
    # -- the persona (a shipped one by name, or the user's own)
    persona: str = "agreeableness"
    persona_file: str = ""  # a personas JSON (steering/data/personas.json format); persona picks one by name
    persona_high: list[str] = field(default_factory=list)  # the user's own high-pole system prompts ...
    persona_low: list[str] = field(default_factory=list)  # ... and matched low-pole ones (same count)
    persona_trait: str = ""  # the user's persona's trait, in words
    prompt_indices: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    # -- steering at matched KL
    steer: bool = True
    layer: float = 0.4  # fraction of depth (0.4 = 40% of the way up); >= 1 is a layer index
    vector_source: Literal["prompt", "response"] = "response"
    n_vector_questions: int = 8
    n_vector_pairs: int = 3
    n_kl_prompts: int = field(default=0, metadata={"zero": "every shipped neutral prompt"})
    positions: str = "all"
    kl_rtol: float = 0.05  # the steering KL is matched to the prompts' within this relative tolerance
    # -- self-report
    instrument: str = "ipip-neo-120"  # or the path of a statement file (text, trait, key)
    self_report_trait: str = ""  # the instrument's trait measured; default: the Big Five trait named by the persona
    n_items: int = field(default=0, metadata={"zero": "every item of the trait"})
    formats: list[str] = field(default_factory=lambda: ["numbered"])  # the format study is self-assessment
    statements_file: str = ""  # Yes/No persona statements (JSONL); default: the persona's shipped statements
    n_statements: int = 20
    # -- behaviour
    tasks: list[str] = field(default_factory=lambda: ["sycophancy", "iat", "calibration"])
    n_dilemmas: int = field(default=20, metadata={"zero": "all 52"})
    n_iat_sets: int = field(default=8, metadata={"zero": "all 21"})
    n_iat_words: int = field(default=4, metadata={"zero": "every attribute word"})
    n_questions: int = field(default=25, metadata={"zero": "all 75"})
    max_new_tokens: int = 6
    behaviour_pairing: str = "sycophancy"  # the behaviour the persona's trait should move (empty: none)
    pairing_sign: int = 1  # +1: more of the trait, more of the behaviour
    # -- statistics
    alpha: float = 0.05
    n_permutations: int = 10000
    batch_size: int = 16


def resolve_persona(cfg: PersonalityIllusionConfig) -> Any:
    from steering.personas import Persona, load_personas

    if cfg.persona_high or cfg.persona_low:
        if len(cfg.persona_high) != len(cfg.persona_low) or not cfg.persona_high:
            raise ValueError(f"persona_high and persona_low must give matched system prompts (same count >= 1); got "
                             f"{len(cfg.persona_high)} and {len(cfg.persona_low)}")
        return Persona(cfg.persona, "custom", cfg.persona_trait or cfg.persona, cfg.persona_trait or cfg.persona,
                       tuple(cfg.persona_high), tuple(cfg.persona_low), cfg.statements_file or None)
    p = load_personas([cfg.persona], path=cfg.persona_file or None)[0]
    if cfg.statements_file:
        from dataclasses import replace

        p = replace(p, statements=cfg.statements_file)
    return p


def resolve_instrument(cfg: PersonalityIllusionConfig, persona: Any) -> Any:
    from workbench.instruments import load_instrument, load_ipip_neo

    if cfg.instrument in ("ipip-neo-120", "ipip-neo-300"):
        ins = load_ipip_neo(int(cfg.instrument[-3:]))
    else:
        ins = load_instrument(cfg.instrument, trait=cfg.self_report_trait or None)
    trait = cfg.self_report_trait or next((t for t in ins.traits if t.lower() == persona.name.lower()), None)
    if trait is None:
        if len(ins.traits) == 1:
            trait = ins.traits[0]
        else:
            raise ValueError(f"no self-report trait for persona {persona.name!r}: set self_report_trait to one of "
                             f"{ins.traits} (or give an instrument file with the persona's trait)")
    return ins.subset([trait], cfg.n_items or None, seed=cfg.seed), trait


@experiment("personality-illusion", PersonalityIllusionConfig,
            "self-report vs behaviour (Han et al. 2025): the paper's released runs re-analysed; a persona injected by "
            "prompt and by steering at matched KL, measured on self-report and on behaviour")
def run(ctx: RunContext, cfg: PersonalityIllusionConfig) -> None:
    from workbench.instruments.tasks import TASKS

    from ..comparison import compare_headlines

    bad = [t for t in cfg.tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown task(s) {bad}; tasks are {list(TASKS)}")
    if cfg.behaviour_pairing and cfg.behaviour_pairing not in cfg.tasks:
        raise ValueError(f"behaviour_pairing {cfg.behaviour_pairing!r} is not among tasks {cfg.tasks}")
    if cfg.reanalysis:  # the paper's runs: no model, once
        ctx.step("paper-reanalysis", lambda w: _reanalysis_step(w, cfg))
    heads = ctx.per_model(lambda _: _run_one(ctx, cfg))
    pair = cfg.behaviour_pairing
    compare_headlines(
        ctx, "compare-personality-illusion", "self-report vs behaviour under persona injection, per model",
        "Per model, for the first high-pole condition of each method (system prompt; steering at the prompt's KL): "
        "the shift of the self-reported trait" + (f" and of the paired behaviour ({pair})" if pair else "") + " from "
        "the baseline (paired over items, 95% bootstrap CI), and the dissociation "
        "cross-check over every injection condition (Spearman with 95% CI; inconclusive by rule below 10 "
        "conditions). A model whose self-report moves while its behaviour does not shows the illusion.",
        heads, seed=cfg.seed)


def _run_one(ctx: RunContext, cfg: PersonalityIllusionConfig) -> dict:
    """The injection, every condition and the analysis on the model in scope; returns its headline numbers."""
    from ..comparison import crosscheck_estimate

    m = ctx.model()
    persona = resolve_persona(cfg)
    ins, trait = resolve_instrument(cfg, persona)
    ctx.record_data("persona", persona.to_dict())
    ctx.record_data("self_report_items", ins.to_records())
    layer = int(cfg.layer) if cfg.layer >= 1 else cfg.layer
    payload = ctx.step("injection", lambda w: _injection_step(w, ctx, cfg, m, persona, layer))
    from steering.injection import PersonaInjection

    inj = PersonaInjection.from_state(payload["state"])
    results = {}
    for c in inj.conditions:
        slug = {"steer:+": "steer-plus", "steer:-": "steer-minus"}.get(c.name, c.name.replace(":", "-"))
        results[c.name] = ctx.step(f"condition-{slug}", lambda w, c=c: _condition_step(w, ctx, cfg, m, persona, ins,
                                                                                          trait, c))
    a = ctx.step("self-report-vs-behaviour", lambda w: _analysis_step(w, cfg, m, persona, trait, inj, results))
    head: dict = {}
    for method in ("prompt", "steer"):
        first = next((c for c in inj.conditions if c.method == method and c.pole == "high"), None)
        est = a.get("shifts", {}).get(first.name, {}) if first is not None else {}
        for k in ("self_report", cfg.behaviour_pairing):
            if k and k in est:
                head[f"{method} (high): {'self-report' if k == 'self_report' else k} shift"] = est[k]
    head["dissociation"] = crosscheck_estimate(ctx, ctx.step_name("self-report-vs-behaviour"), "dissociation")
    return head


# --------------------------------------------------------------------------------------------- steps
def _reanalysis_step(w: Any, cfg: PersonalityIllusionConfig) -> dict:
    from workbench.instruments.illusion import paper_reanalysis, plot_paper_injection
    from workbench.plots import plot_crosscheck

    r = paper_reanalysis(seed=cfg.seed, alpha=cfg.alpha, n_permutations=cfg.n_permutations)
    cc = r.crosschecks["agreeableness"]
    import math

    word = {True: "REPRODUCED", False: "NOT REPRODUCED", None: "UNDECIDED"}
    metrics: dict = {f"finding {i + 1}: {f.claim}": f"{word[f.reproduced]}. {f.evidence}"
                     for i, f in enumerate(r.findings)}
    e = r.stabilisation_estimate
    metrics["instruct / base SD ratio (geometric mean over 6 model pairs)"] = {
        "value": math.exp(e.value), "ci_low": math.exp(e.ci_low), "ci_high": math.exp(e.ci_high)}
    out = w.crosscheck("paper_agreeableness", cc, "The paper's released runs, re-analysed",
        "The Personality Illusion's own per-run results (12 instruct, 6 base models; 27 runs each), analysed with "
        "the workbench's statistics. Finding 1: across-run spread of self-reports, instruct vs base (log SD ratio "
        "per model pair, exact sign-flip test over the 6 pairs). Finding 2: Spearman of 6 self-reported traits "
        "with 5 behaviours over the 12 instruct models, Benjamini-Hochberg across the 30. Finding 3: persona "
        "injection (3 prompting strategies): per-model shifts of the targeted self-report and the paired behaviour. "
        "Cross-check: per model, the agreeableness self-report shift against the sycophancy shift (strategies "
        "averaged); the self-regulation / risk-taking cross-check is in the tables.",
        metrics=metrics, figures=[w.figure("paper_injection", plot_paper_injection(r)),
                                  w.figure("paper_selfreg_crosscheck", plot_crosscheck(r.crosschecks["self_regulation"]))],
        tables=[w.table("paper_findings", r.to_dataframe()), w.table("paper_stabilisation", r.stabilisation),
                w.table("paper_prediction", r.prediction), w.table("paper_injection", r.injection),
                w.table("paper_selfreg_crosscheck", r.crosschecks["self_regulation"].to_dataframe())])
    return {**out, "reproduced": [f.reproduced for f in r.findings]}


def _injection_step(w: Any, ctx: Any, cfg: PersonalityIllusionConfig, m: Any, persona: Any, layer: Any) -> dict:
    from steering.data import neutral_prompts
    from steering.injection import persona_injection

    kp = neutral_prompts(cfg.n_kl_prompts or None)
    inj = persona_injection(m, persona, layer=layer, prompt_indices=cfg.prompt_indices, source=cfg.vector_source,
                            n_questions=cfg.n_vector_questions, n_pairs=cfg.n_vector_pairs, kl_prompts=kp,
                            positions=cfg.positions, steer=cfg.steer, rtol=cfg.kl_rtol, seed=cfg.seed,
                            progress=ctx.progress)
    df = inj.to_dataframe()
    metrics: dict = {f"{r.condition}: next-token KL from baseline (nats)": {"value": r.kl, "ci_low": r.kl_ci_low,
                                                                           "ci_high": r.kl_ci_high}
                     for r in df.itertuples() if r.kl is not None and r.kl == r.kl}
    if cfg.steer:
        metrics["steering layer"] = f"{inj.layer} of {m.n_layers} ({inj.site})"
    w.section(Section(
        "Persona injection at matched strength",
        f"Persona '{persona.name}' ({persona.trait}) imposed by {len(cfg.prompt_indices)} matched high/low system "
        "prompt pair(s) and, at layer {L}, by adding its persona vector (mean activation difference of high- vs "
        "low-prompted runs) with + and - sign, each scaled so its mean next-token KL from the unsteered model on "
        f"{len(kp)} neutral prompts equals that of the same pole's prompts.".replace("{L}", str(inj.layer)),
        metrics=metrics, tables=[w.table("conditions", df)]))
    return {"state": inj.state()}


def _condition_step(w: Any, ctx: Any, cfg: PersonalityIllusionConfig, m: Any, persona: Any, ins: Any, trait: str,
                    c: Any) -> dict:
    from steering.compare import Condition, StatementsScorer
    from steering.operators import steer
    from workbench.instruments import administer
    from workbench.instruments.tasks import calibration_task, iat_task, sycophancy_task

    out: dict = {"condition": c.name, "method": c.method, "pole": c.pole}
    metrics, tables = {}, []
    sysp = c.system
    with steer(m, *c.operators):
        sr = administer(m, ins, formats=cfg.formats, system=sysp, condition=c.name, batch_size=cfg.batch_size,
                        seed=cfg.seed)
        items = sr.item_scores()
        est = sr.trait_estimates(seed=cfg.seed)[trait]
        metrics[f"self-report: {trait} (1-{ins.k})"] = est.to_dict()
        metrics["self-report format mass"] = sr.mass_estimate(cfg.seed).value
        tables.append(w.table("self_report", sr.to_dataframe()))
        out["self_report"] = {"items": items["item"].tolist(), "keyed": items["keyed"].tolist(), "score": est.value,
                              "mass": float(sr.mass.mean())}
        if persona.statements:
            st = StatementsScorer(n=cfg.n_statements, seed=cfg.seed, batch_size=cfg.batch_size).score(
                m, persona, Condition(c.method, system=sysp))
            metrics["statements: p(matching)"] = st.aggregate.to_dict()
            metrics["statements: baseline p(Yes)"] = st.p_yes_estimate().to_dict()
            metrics["statements: p(matching), Yes/No bias removed"] = st.corrected().to_dict()
            tables.append(w.table("statements", st.to_dataframe()))
            out["statements"] = {"p_matching": st.values.tolist(), "p_yes": st.p_yes.tolist(),
                                 "corrected": st.corrected().value}
        if "sycophancy" in cfg.tasks:
            s = sycophancy_task(m, n=cfg.n_dilemmas or None, system=sysp, condition=c.name, seed=cfg.seed,
                                batch_size=max(1, cfg.batch_size // 2))
            metrics["sycophancy rate"] = s.rate().to_dict()
            metrics["sycophancy shift toward the user"] = s.mean_shift().to_dict()
            tables.append(w.table("sycophancy", s.to_dataframe()))
            out["sycophancy"] = {"units": list(s.ids), "values": s.shift.tolist(), "rate": s.rate().value,
                                 "score": s.mean_shift().value, "mass": float(s.mass.mean())}
        if "iat" in cfg.tasks:
            r = iat_task(m, n=cfg.n_iat_sets or None, n_words=cfg.n_iat_words or None, system=sysp,
                         condition=c.name, seed=cfg.seed, batch_size=cfg.batch_size)
            ps = r.per_set()
            metrics["IAT association D"] = r.association().to_dict()
            tables.append(w.table("iat", r.to_dataframe()))
            out["iat"] = {"units": ps["set"].tolist(), "values": ps["D"].tolist(), "score": r.association().value,
                          "mass": float(ps["mass"].mean())}
        if "calibration" in cfg.tasks:
            k = calibration_task(m, n=cfg.n_questions or None, system=sysp, condition=c.name, seed=cfg.seed,
                                 max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
            metrics["calibration: accuracy"] = k.accuracy().to_dict()
            metrics["calibration: mean confidence (%)"] = k.mean_confidence().to_dict()
            metrics["calibration: overconfidence"] = k.overconfidence().to_dict()
            tables.append(w.table("calibration", k.to_dataframe()))
            over = (k.rows["confidence"] / 100 - k.rows["correct"].astype(float)).tolist()
            out["calibration"] = {"units": k.rows["question"].tolist(), "values": over,
                                  "score": k.overconfidence().value, "mass": float(k.rows["mass"].mean())}
    w.section(Section(f"Condition: {c.name}", f"{c.method} ({c.pole or 'no persona'})" +
                      (f", system prompt: \"{sysp}\"" if sysp else "") +
                      (f", KL from baseline {c.kl.format(3)}" if c.kl is not None else ""),
                      metrics=metrics, tables=tables))
    return out


_MEASURES = {"sycophancy": "sycophancy shift toward the user", "iat": "IAT association D",
             "calibration": "overconfidence (confidence - correct)"}


def _analysis_step(w: Any, cfg: PersonalityIllusionConfig, m: Any, persona: Any, trait: str, inj: Any,
                   results: dict) -> dict:
    import numpy as np
    import pandas as pd

    from workbench.crosscheck import CrossCheck
    from workbench.instruments.illusion import dissociation_crosscheck
    from workbench.stats import paired_mean_difference

    base = results["baseline"]
    rows = []

    def shift(cur: dict, ref: dict, key: str, unit_key: str) -> Any:
        a = dict(zip(cur[unit_key], cur[key]))
        b = dict(zip(ref[unit_key], ref[key]))
        units = [u for u in a if u in b]
        x = np.array([a[u] for u in units]) - np.array([b[u] for u in units])
        return paired_mean_difference(x, seed=cfg.seed, n_permutations=cfg.n_permutations), x

    shifts: dict = {}  # condition -> measure -> the shift's estimate (dict), for comparisons across models
    for c in inj.conditions:
        if c.method == "baseline":
            continue
        r = results[c.name]
        e_sr, x_sr = shift(r["self_report"], base["self_report"], "keyed", "items")
        shifts[c.name] = {"self_report": e_sr.to_dict()}
        row = {"condition": c.name, "method": c.method, "pole": c.pole, "kl": None if c.kl is None else c.kl.value,
               "self_report_shift": e_sr.value, "self_report_ci": (e_sr.ci_low, e_sr.ci_high),
               "self_report_p": e_sr.p_value, "self_report_dz": _dz(x_sr, cfg.seed)}
        if "statements" in r:
            e_st, _ = shift({"u": list(range(len(r["statements"]["p_matching"]))), **r["statements"]},
                            {"u": list(range(len(base["statements"]["p_matching"]))), **base["statements"]},
                            "p_matching", "u")
            row.update(statements_shift=e_st.value, statements_ci=(e_st.ci_low, e_st.ci_high),
                       statements_p=e_st.p_value)
        for t in cfg.tasks:
            e_b, x_b = shift(r[t], base[t], "values", "units")
            shifts[c.name][t] = e_b.to_dict()
            row.update({f"{t}_shift": e_b.value, f"{t}_ci": (e_b.ci_low, e_b.ci_high), f"{t}_p": e_b.p_value,
                        f"{t}_dz": _dz(x_b, cfg.seed)})
        rows.append(row)
    tab = pd.DataFrame(rows)
    levels = pd.DataFrame([{"condition": name, "self_report": r["self_report"]["score"],
                            **{t: r[t]["score"] for t in cfg.tasks},
                            **({"statements_corrected": r["statements"]["corrected"]} if "statements" in r else {})}
                           for name, r in results.items()])
    prov = m.provenance(seed=cfg.seed, extra={"experiment": "personality-illusion", "persona": persona.name,
                                             "trait": trait})
    metrics: dict = {}
    for method in ("prompt", "steer"):
        sub = tab[tab["method"] == method]
        if not len(sub):
            continue
        hi, lo = sub[sub["pole"] == "high"], sub[sub["pole"] == "low"]
        metrics[f"{method}: self-report shift, high pole (mean over conditions)"] = float(hi["self_report_shift"].mean())
        metrics[f"{method}: self-report shift, low pole"] = float(lo["self_report_shift"].mean())
        for t in cfg.tasks:
            metrics[f"{method}: {_MEASURES[t]} shift, high / low pole"] = [float(hi[f"{t}_shift"].mean()),
                                                                             float(lo[f"{t}_shift"].mean())]
    # the dissociation: self-report shift vs the paired behaviour's shift over the injection conditions
    notes = []
    if cfg.behaviour_pairing:
        t = cfg.behaviour_pairing
        d = tab.assign(behaviour_shift=cfg.pairing_sign * tab[f"{t}_shift"])
        cc = dissociation_crosscheck(d, seed=cfg.seed, provenance=prov)
        cc = _rename(cc, f"{trait} self-report shift", f"{_MEASURES[t]} shift x {cfg.pairing_sign:+d}")
        sr_moves = int(((tab["self_report_ci"].map(lambda c: c[0] > 0 or c[1] < 0)) & (tab["self_report_p"] <
                                                                                          cfg.alpha)).sum())
        b_moves = int(((tab[f"{t}_ci"].map(lambda c: c[0] > 0 or c[1] < 0)) & (tab[f"{t}_p"] < cfg.alpha)).sum())
        metrics["conditions whose self-report moved (CI excludes 0, p < alpha)"] = f"{sr_moves}/{len(tab)}"
        metrics[f"conditions whose {t} moved"] = f"{b_moves}/{len(tab)}"
        summary = (f"Every injection condition's shift from the baseline, paired over items (bootstrap CI, sign-flip "
                   f"p): the {trait} self-report (IPIP items, keyed, both option orders) and each behaviour. "
                   f"Cross-check over the {len(tab)} injection conditions: self-report shift against the {t} shift "
                   f"(signed {cfg.pairing_sign:+d}, the direction the trait predicts). 'agree' means the self-report "
                   "tracks behaviour; a self-report that moves while the behaviour does not (or moves at random) is "
                   "the dissociation the paper calls the personality illusion.")
        if len(tab) < 10:
            notes.append(f"Only {len(tab)} injection conditions: the cross-check is inconclusive by rule (fewer than 10 "
                         "units); the per-condition shifts above still show whether each measure moved.")
        out = w.crosscheck("dissociation", cc, "Self-report vs behaviour under persona injection", summary,
                                 metrics=metrics, figures=[w.figure("shifts", _plot_shifts(tab, trait, cfg.tasks))],
                                 tables=[w.table("shifts", tab), w.table("levels", levels)], notes=notes)
    else:
        w.section(Section("Self-report vs behaviour under persona injection", "Per-condition shifts.", metrics=metrics,
                          figures=[w.figure("shifts", _plot_shifts(tab, trait, cfg.tasks))],
                          tables=[w.table("shifts", tab), w.table("levels", levels)]))
        out = {}
    # across conditions (baseline included): self-reported trait level vs each behaviour's level
    across = {}
    for t in cfg.tasks:
        cc = CrossCheck.from_measurements(levels["condition"].tolist(), levels["self_report"], levels[t],
                                          internal_name=f"{trait} self-report", behavioural_name=_MEASURES[t],
                                          unit_name="condition", seed=cfg.seed, provenance=prov,
                                          expected_sign=cfg.pairing_sign if t == cfg.behaviour_pairing else 1)
        across[t] = {"verdict": cc.verdict, "rho": None if cc.correlation is None else cc.correlation.value,
                     "reason": cc.reason}
        w.json(f"across_{t}", cc.to_dict())
    w.section(Section("Self-reported trait vs behaviour across conditions",
                      f"Across the {len(levels)} conditions (baseline included), Spearman of the {trait} self-report "
                      "score with each behaviour's score (expected sign + only for the paired behaviour).",
                      metrics={t: v for t, v in across.items()}))
    return {**out, "across": across, "n_conditions": len(tab), "shifts": shifts}


def _dz(x: Any, seed: int) -> float | None:
    import numpy as np

    from workbench.instruments.illusion import standardised_shift

    x = np.asarray(x, float)
    if x.size < 3 or x.std() == 0:
        return None
    return standardised_shift(x, seed=seed).value


def _rename(cc: Any, internal: str, behavioural: str) -> Any:
    import dataclasses

    return dataclasses.replace(cc, internal_name=internal, behavioural_name=behavioural)


def _plot_shifts(tab: Any, trait: str, tasks: Any) -> Any:
    import numpy as np

    from workbench.plots import figure_and_ax

    fig, ax = figure_and_ax(None, (max(6.0, 0.9 * len(tab) + 3), 3.8))
    cols = [("self_report", f"{trait} self-report")] + [(t, _MEASURES[t]) for t in tasks]
    width = 0.8 / len(cols)
    x = np.arange(len(tab))
    for j, (k, lab) in enumerate(cols):
        v = tab[f"{k}_shift"].to_numpy(float)
        ci = tab[f"{k}_ci"].tolist()
        lo = np.array([c[0] for c in ci])
        hi = np.array([c[1] for c in ci])
        ax.errorbar(x - 0.4 + width * (j + 0.5), v, yerr=[v - lo, hi - v], fmt="o", ms=4, capsize=2, label=lab)
    ax.axhline(0, color="0.5", ls="--", lw=1)
    ax.set_xticks(x, tab["condition"].tolist(), fontsize=7, rotation=30)
    ax.set_ylabel("shift from baseline (own units)")
    ax.set_title("Persona injection: self-report and behaviour shifts (95% CIs)", fontsize=9)
    ax.legend(fontsize=6)
    return fig
