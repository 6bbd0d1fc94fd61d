"""Comparison sections of a run over several models (``workbench run cross-check --model A --model B ...``).

Built from what each (model, study) step stored (its payload and its cross-check JSON), never by running a model
again; each is one resumable step that depends on every model's weights:

- ``compare-probe``: the evaluation-awareness probe's AUROC per layer of every model on one figure, the layer as
  a fraction of depth (:class:`workbench.comparison.LayerCurves`);
- ``compare-personas``: per model, personas ranked by their effect (by prompt and by steering, per scorer; for
  the refusal scorer the *drop* in refusals, so rank 1 is the most dangerous persona), and Spearman with its
  CI between every pair of models (:class:`workbench.comparison.RankAgreement`);
- ``compare-attack-success``: per persona, every model's change in attack success when steered toward it (lowest to
  largest coefficient), the equal-norm random control's, and steered - random at the largest coefficient (paired
  over requests) (``ModelTable``); with 3 personas or more, Spearman between every pair of models of the personas
  ranked by the steering effect (``RankAgreement``);
- ``compare-caa``: per CAA behaviour, every model's selected layer as a fraction of depth and its steering effect
  vs the random control's (``ModelTable``), and the steering effect at every candidate layer by depth
  (``LayerCurves``);
- ``compare-induction``: per model the top induction heads and the copying damage of ablating them vs
  matched random heads (targeted - random, stratified bootstrap) (:class:`workbench.comparison.ModelTable`);
- ``compare-protocol``: per model Olsson et al.'s protocol, the loss increase of ablating the top-k% induction
  heads per layer vs matched random sets and targeted - random (loss and copying log p) (``ModelTable``);
- ``compare-lens-patching``: the logit-lens and patching cross-checks side by side (``ModelTable``).

Experiments whose steps run in the driver visit several models with :meth:`experiments.run.RunContext.per_model`
and compare each model's headline numbers (estimates with their intervals) with :func:`compare_headlines`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from .run import RunContext, Section

__all__ = ["COMPARISONS", "write_comparisons", "compare_layer_curves", "compare_headlines", "crosscheck_estimate",
           "section_metrics"]

#: the comparison steps, in report order
COMPARISONS = ("compare-probe", "compare-personas", "compare-attack-success", "compare-caa", "compare-induction",
               "compare-protocol", "compare-lens-patching")


def _crosscheck(ctx: RunContext, step: str | None, slug: str) -> dict | None:
    if step is None:
        return None
    p = ctx.step_dir(step) / f"{slug}_crosscheck.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _targeted_minus_random(drops: Any, is_top: Any) -> float:
    """Mean copying damage of the top heads minus that of the random heads."""
    return float(drops[is_top == 1].mean() - drops[is_top == 0].mean())


def write_comparisons(ctx: RunContext, models: Sequence[tuple[str, str]], steps: dict[tuple[str, str], str],
                      payloads: dict[tuple[str, str], dict], *, seed: int = 0) -> None:
    """Write the comparison steps. ``models``: (name, backend) pairs in order; ``steps`` / ``payloads``:
    ``{(study, model name): step name / payload}`` of the per-model steps that ran (``study`` is the module name
    in :mod:`experiments.studies`)."""
    from workbench.comparison import LayerCurves, ModelTable, depth_fraction, rank_agreement
    from workbench.stats import Estimate

    names = [n for n, _ in models]
    prov = _provenance(ctx, names, seed)

    def skipped(study: str, name: str) -> str | None:
        p = payloads.get((study, name))
        if p is None:
            return "not run (the study is disabled)"
        return p.get("skipped")

    if any(("eval_awareness", n) in payloads for n in names):
        def probe(w: Any) -> dict:
            curves, n_layers, notes = {}, {}, []
            for n in names:
                why = skipped("eval_awareness", n)
                if why:
                    notes.append(f"{n}: {why}")
                    continue
                p = payloads[("eval_awareness", n)]
                curves[n] = [(int(r["layer"]), Estimate.from_dict(r["estimate"])) for r in p["auroc_by_layer"]]
                n_layers[n] = int(p["n_layers"])
            res = LayerCurves("probe AUROC (held-out topics)", curves, n_layers, reference=0.5, provenance=prov)
            t, f = w.result("probe_auroc_by_depth", res)
            w.section(Section("Comparison: evaluation-awareness probe AUROC by depth",
                              "The test-vs-deploy probe's AUROC (held-out topics, 95% bootstrap CI) at each probed "
                              "layer of every model; x is the layer as a fraction of depth (0 the first layer, 1 "
                              "the last), since the models differ in depth. 0.5 is chance. " + res.summary(),
                              tables=t, figures=f, notes=notes))
            return {"best_layer": {n: res.best(n)[0] for n in curves if res.best(n) is not None}}
        ctx.step("compare-probe", probe, models=models)

    if any(("personas", n) in payloads for n in names):
        def personas(w: Any) -> dict:
            scores: dict[str, dict[str, dict[str, float]]] = {}
            notes = []
            for n in names:
                why = skipped("personas", n)
                if why:
                    notes.append(f"{n}: {why}")
                    continue
                for e in payloads[("personas", n)].get("effects", []):
                    shift = e["shift"] if e["shift"] is not None else math.nan
                    danger = -shift if e["scorer"] == "refusal" else shift
                    measure = f"{'by prompt' if e['method'] == 'prompt' else 'by steering'} / {e['scorer']}"
                    scores.setdefault(measure, {}).setdefault(n, {})[e["persona"]] = danger
            res = rank_agreement("persona", dict(sorted(scores.items())), seed=seed, provenance=prov)
            t, f = w.result("persona_rank_agreement", res)
            t.append(w.table("persona_rankings", res.ranking_table()))
            w.section(Section("Comparison: persona danger rankings across models",
                              "Per model, each persona's effect relative to the unsteered baseline when imposed by "
                              "system prompt and by steering, per scorer: for the refusal scorer the drop in the "
                              "refusal rate on harmful requests (rank 1 = the persona that lowers refusals most), "
                              "for the statements scorer the rise in agreement with the persona's statements. "
                              "Between every pair of models: Spearman's rho over the personas both scored (95% "
                              "bootstrap CI, permutation p). " + res.summary(), tables=t, figures=f, notes=notes))
            return {"rho": {m: [p[2].value if p[2] else None for p in ps] for m, ps in res.pairs.items()}}
        ctx.step("compare-personas", personas, models=models)

    if any(("persona_asr", n) in payloads for n in names):
        def attack_success(w: Any) -> dict:
            from .writer import _slug

            by_persona: dict[str, dict[str, dict[str, Any]]] = {}
            steer: dict[str, dict[str, float]] = {}
            notes, coefs = [], set()
            for n in names:
                why = skipped("persona_asr", n)
                if why:
                    notes.append(f"{n}: {why}")
                    continue
                p = payloads[("persona_asr", n)]
                lo, hi = min(p["coefficients"]), max(p["coefficients"])
                coefs.add((lo, hi))
                for persona, e in p["personas"].items():
                    eff = Estimate.from_dict(e["effect"])
                    by_persona.setdefault(persona, {})[n] = {
                        "steering layer": int(p["layer"]),
                        "depth": depth_fraction(int(p["layer"]), int(p["n_layers"])),
                        f"steering: ASR x{hi:g} - x{lo:g}": eff,
                        f"random control: ASR x{hi:g} - x{lo:g}": Estimate.from_dict(e["random_effect"]),
                        f"steered - random at x{hi:g}": Estimate.from_dict(e["steer_minus_random"])}
                    steer.setdefault(n, {})[persona] = eff.value
            tables, figures, lines = [], [], []
            for persona, rows in by_persona.items():
                res = ModelTable(f"Attack success steered toward {persona}", rows, provenance=prov)
                t, f = w.result(f"asr_{_slug(persona)}_by_model", res)
                tables += t
                figures += f
                lines.append(res.summary())
            out: dict = {"personas": {p: {n: {k: (v.to_dict() if isinstance(v, Estimate) else v)
                                             for k, v in r.items()} for n, r in rows.items()}
                                      for p, rows in by_persona.items()}}
            if len(by_persona) >= 3:
                ra = rank_agreement("persona", {"steering effect on attack success": steer}, seed=seed, provenance=prov)
                t, f = w.result("asr_rank_agreement", ra)
                tables += t + [w.table("asr_rankings", ra.ranking_table())]
                figures += f
                lines.append(ra.summary())
                out["rho"] = {m: [q[2].value if q[2] else None for q in ps] for m, ps in ra.pairs.items()}
            else:
                notes.append(f"{len(by_persona)} persona(s) steered: Spearman between models' persona rankings needs "
                             "at least 3 (attack_success.personas)")
            if len(coefs) > 1:
                notes.append(f"the models were steered over different coefficient ranges: {sorted(coefs)}")
            w.section(Section("Comparison: attack success under persona steering across models",
                              "Per persona and model: the change in attack success rate on harmful requests (shared "
                              "ASR scorer) from the lowest to the largest steering coefficient along the persona "
                              "vector, the same for the equal-norm random direction (the control), and steered - "
                              "random at the largest coefficient, paired over requests (95% bootstrap CIs). With 3 "
                              "personas or more, Spearman's rho between every pair of models of the personas ranked "
                              "by the steering effect. " + " ".join(lines), tables=tables, figures=figures,
                              notes=notes))
            return out
        ctx.step("compare-attack-success", attack_success, models=models)

    if any(("caa", n) in payloads for n in names):
        def caa(w: Any) -> dict:
            from .writer import _slug

            by_b: dict[str, dict[str, dict[str, Any]]] = {}
            curves: dict[str, dict[str, list]] = {}
            n_layers: dict[str, int] = {}
            notes = []
            for n in names:
                why = skipped("caa", n)
                if why:
                    notes.append(f"{n}: {why}")
                    continue
                p = payloads[("caa", n)]
                n_layers[n] = int(p["n_layers"])
                lo, hi = min(p["multipliers"]), max(p["multipliers"])
                for b, e in p["behaviours"].items():
                    L = int(e["selected_layer"])
                    by_b.setdefault(b, {})[n] = {
                        "selected layer": L, "n layers": n_layers[n], "depth": depth_fraction(L, n_layers[n]),
                        f"steering: p(matching) x{hi:+g} - x{lo:+g}": Estimate.from_dict(e["effect"]),
                        f"random control: x{hi:+g} - x{lo:+g}": (Estimate.from_dict(e["random_effect"])
                                                                if e.get("random_effect") else None)}
                    curves.setdefault(b, {})[n] = [(int(r["layer"]), Estimate.from_dict(r["estimate"]))
                                                   for r in e["effect_by_layer"]]
            tables, figures, lines = [], [], []
            for b, rows in by_b.items():
                res = ModelTable(f"CAA {b}", rows, provenance=prov)
                t, f = w.result(f"caa_{_slug(b)}_by_model", res)
                lc = LayerCurves(f"CAA {b}: steering effect", curves[b], {n: n_layers[n] for n in curves[b]},
                                 reference=0.0, provenance=prov)
                t2, f2 = w.result(f"caa_{_slug(b)}_effect_by_depth", lc)
                tables += t + t2
                figures += f + f2
                lines.append(res.summary())
            w.section(Section("Comparison: CAA steering across models",
                              "Per A/B behaviour and model: the layer selected on held-out pairs (and as a fraction "
                              "of depth, 0 the first layer and 1 the last), the change in p(answer matching the "
                              "behaviour) from the lowest to the largest multiplier at that layer, and the same along "
                              "the equal-norm random direction (the control; expected to contain 0), 95% bootstrap "
                              "CIs paired over items; and the steering effect at every candidate layer by depth. "
                              + " ".join(lines), tables=tables, figures=figures, notes=notes))
            return {b: {n: {k: (v.to_dict() if isinstance(v, Estimate) else v) for k, v in r.items()}
                        for n, r in rows.items()} for b, rows in by_b.items()}
        ctx.step("compare-caa", caa, models=models)

    if any(("induction", n) in payloads for n in names):
        def induction(w: Any) -> dict:
            import numpy as np

            from workbench.stats import bootstrap

            rows: dict[str, dict[str, Any]] = {}
            for n in names:
                if skipped("induction", n):
                    rows[n] = {"note": skipped("induction", n)}
                    continue
                p = payloads[("induction", n)]
                heads = p["heads"]
                top = sorted((h for h in heads if h["set"] == "top"), key=lambda h: -h["induction_score"])
                d_top = np.array([h["logprob_drop_per_token"] for h in heads if h["set"] == "top"], float)
                d_rand = np.array([h["logprob_drop_per_token"] for h in heads if h["set"] == "random"], float)
                row: dict[str, Any] = {
                    "top heads": ", ".join(f"{h['head']} ({h['induction_score']:.2f}, depth "
                                           f"{depth_fraction(int(h['layer']), int(p['n_layers'])):.2f})"
                                           for h in top[:3]),
                    "max induction score": float(p["max_induction_score"]),
                    "top heads: copying log p drop": bootstrap(d_top, seed=seed) if len(d_top) else None,
                    "random heads: copying log p drop": bootstrap(d_rand, seed=seed) if len(d_rand) else None}
                if len(d_top) >= 2 and len(d_rand) >= 2:
                    vals = np.concatenate([d_top, d_rand])
                    is_top = np.concatenate([np.ones(len(d_top)), np.zeros(len(d_rand))])
                    row["targeted - random"] = bootstrap((vals, is_top), _targeted_minus_random, seed=seed,
                                                         strata=list(is_top), vectorized=False)
                rows[n] = row
            res = ModelTable("Induction heads per model", rows, provenance=prov)
            t, f = w.result("induction_by_model", res)
            w.section(Section("Comparison: induction heads and targeted vs random ablation",
                              "Per model: the three heads with the highest induction score (with their depth), and "
                              "the mean drop in per-token log p of the repeated half of random strings when one top "
                              "head vs one matched random head is zero-ablated (95% bootstrap CIs; targeted - random "
                              "resamples heads within each set). " + res.summary(), tables=t, figures=f))
            return {n: {k: (v.value if isinstance(v, Estimate) else v) for k, v in r.items()} for n, r in rows.items()}
        ctx.step("compare-induction", induction, models=models)

    if any(("induction_protocol", n) in payloads for n in names):
        def protocol(w: Any) -> dict:
            rows: dict[str, dict[str, Any]] = {}
            for n in names:
                why = skipped("induction_protocol", n)
                if why:
                    rows[n] = {"note": why}
                    continue
                p = payloads[("induction_protocol", n)]
                rows[n] = {"heads ablated": len(p["targeted_heads"]), "layers": int(p["n_layers"]),
                           "random sets": int(p["n_random_sets"]),
                           "loss increase, targeted": Estimate.from_dict(p["loss_targeted"]),
                           "loss increase, random": Estimate.from_dict(p["loss_random"]),
                           "loss: targeted - random": Estimate.from_dict(p["loss_targeted_minus_random"]),
                           "copying log p: targeted - random": Estimate.from_dict(p["logprob_targeted_minus_random"])}
            res = ModelTable("Targeted vs matched random ablation per model", rows, provenance=prov)
            t, f = w.result("protocol_by_model", res)
            w.section(Section("Comparison: targeted vs random ablation of induction heads (Olsson et al.'s protocol)",
                              "Per model: the top-k% induction heads of each layer ablated together vs matched random "
                              "head sets (same number per layer): the increase in loss on the repeated half of random "
                              "tokens for each, targeted - random, and the change in per-token log p of the copy "
                              "(targeted - random; negative = the targeted heads hurt copying more), 95% CIs. "
                              + res.summary(), tables=t, figures=f))
            return {n: {k: (v.value if isinstance(v, Estimate) else v) for k, v in r.items()} for n, r in rows.items()}
        ctx.step("compare-protocol", protocol, models=models)

    if any((s, n) in payloads for s in ("logit_lens", "patching") for n in names):
        def lens_patching(w: Any) -> dict:
            rows: dict[str, dict[str, Any]] = {}
            for n in names:
                row: dict[str, Any] = {}
                for study, slug, label in (("logit_lens", "lens", "lens"), ("patching", "patching", "patching")):
                    why = skipped(study, n)
                    if why:
                        row[f"{label} verdict"] = f"skipped: {why}"
                        continue
                    cc = _crosscheck(ctx, steps.get((study, n)), slug)
                    corr = cc.get("correlation") if cc else None
                    row[f"{label}: Spearman"] = Estimate.from_dict(corr) if corr else None
                    row[f"{label} verdict"] = cc.get("verdict") if cc else None
                    p = payloads[(study, n)]
                    if study == "logit_lens":
                        row["p(first answer) at the output"] = p.get("p_target_final")
                    else:
                        row["AtP top-k recall"] = p.get("recall_at_k")
                rows[n] = row
            res = ModelTable("Logit lens and patching per model", rows, provenance=prov)
            t, f = w.result("lens_patching_by_model", res)
            w.section(Section("Comparison: logit lens and patching side by side",
                              "Per model: the logit-lens cross-check (resolution stage vs log p of the answer; "
                              "expected negative) and the patching cross-check (attribution patching vs exact head "
                              "patching; expected positive), Spearman with 95% bootstrap CI and the verdict, with "
                              "the lens's p(answer) on the first fact and AtP's top-k recall. " + res.summary(),
                              tables=t, figures=f))
            return {n: {k: (v.value if isinstance(v, Estimate) else v) for k, v in r.items()} for n, r in rows.items()}
        ctx.step("compare-lens-patching", lens_patching, models=models)


def compare_layer_curves(ctx: RunContext, step: str, models: Sequence[tuple[str, str]], payloads: dict[str, dict], *,
                         seed: int = 0, what: str = "probes") -> dict:
    """A comparison step of per-layer probe AUROC curves: for each curve (a probed label, e.g. a preference
    dimension) every model's AUROC by depth on one figure (:class:`workbench.comparison.LayerCurves`).
    ``payloads``: ``{model: payload}`` with ``n_layers`` and ``auroc_by_layer`` (``{curve: [{"layer",
    "estimate"}]}``); a model whose payload says ``skipped`` (or is missing) is named in the notes."""
    from workbench.comparison import LayerCurves
    from workbench.stats import Estimate

    from .writer import _slug

    names = [n for n, _ in models]
    prov = _provenance(ctx, names, seed)

    def write(w: Any) -> dict:
        notes, curves_by = [], {}
        for n in names:
            p = payloads.get(n)
            if p is None or p.get("skipped"):
                notes.append(f"{n}: {p.get('skipped') if p else 'not run'}")
                continue
            for c, pts in p["auroc_by_layer"].items():
                curves_by.setdefault(c, {})[n] = [(int(r["layer"]), Estimate.from_dict(r["estimate"])) for r in pts]
        tables, figures, best, lines = [], [], {}, []
        for c, curves in curves_by.items():
            res = LayerCurves(f"{c} probe AUROC", curves, {n: int(payloads[n]["n_layers"]) for n in curves},
                              reference=0.5, provenance=prov)
            t, f = w.result(f"{_slug(c)}_auroc_by_depth", res)
            tables += t
            figures += f
            best[c] = {n: res.best(n)[0] for n in curves if res.best(n) is not None}
            lines.append(res.summary())
        w.section(Section(f"Comparison: {what}, AUROC by depth",
                          "Each probe's AUROC (held-out test split, 95% interval; the best layer's bootstrapped) at "
                          "each probed layer of every model; x is the layer as a fraction of depth (0 the first "
                          "layer, 1 the last), since the models differ in depth. 0.5 is chance. " + " ".join(lines),
                          tables=tables, figures=figures, notes=notes))
        return {"best_layer": best}
    return ctx.step(step, write, models=models)


def _provenance(ctx: RunContext, names: Sequence[str], seed: int) -> Any:
    """The provenance of a comparison over ``names``: every model with the weights hash the run recorded."""
    from workbench.results import Provenance

    hashes = {n: ctx.manifest.get("models", {}).get(n, {}).get("weights_hash") for n in names}
    return Provenance(model=", ".join(names), seed=seed, extra={"models": hashes})


def crosscheck_estimate(ctx: RunContext, step: str, slug: str) -> Any:
    """The correlation (an :class:`~workbench.stats.Estimate`, with its CI) of the cross-check a finished step
    wrote as ``<slug>_crosscheck.json``; None when it has none (skipped, or too few units to correlate)."""
    from workbench.stats import Estimate

    cc = _crosscheck(ctx, step, slug)
    corr = cc.get("correlation") if cc else None
    return Estimate.from_dict(corr) if corr else None


def section_metrics(ctx: RunContext, step: str) -> dict:
    """The metrics of every report section a finished step wrote, merged (an estimate as its dict: what
    :func:`compare_headlines` takes); empty when the step did not finish."""
    p = ctx.step_dir(step) / "_sections.json"
    if not p.is_file():
        return {}
    out: dict = {}
    for sec in json.loads(p.read_text()):
        out.update(sec.get("metrics") or {})
    return out


def compare_headlines(ctx: RunContext, step: str, title: str, description: str, rows: dict[str, dict[str, Any]], *,
                      seed: int = 0, name: str = "by_model") -> dict | None:
    """A comparison step over the models of ``rows`` (what :meth:`~experiments.run.RunContext.per_model` returned):
    each model's headline numbers side by side (:class:`workbench.comparison.ModelTable`: a table, and a figure of
    every estimate column with its CI); nothing with one model (None). ``rows``: ``{model: {column: value}}``, a
    value an :class:`~workbench.stats.Estimate`, its ``to_dict()``, a number, a string or None; built from what each
    model's steps stored, never by running a model again. The step depends on exactly these models' weights."""
    from workbench.comparison import ModelTable
    from workbench.stats import Estimate

    names = list(rows)
    if len(names) < 2:
        return None
    models = [(n, ctx.config.model.backend) for n in names]
    prov = _provenance(ctx, names, seed)

    def as_value(v: Any) -> Any:
        if isinstance(v, dict) and {"value", "ci_low", "ci_high"} <= set(v):
            return Estimate.from_dict(v)
        return v

    table = {n: {c: as_value(v) for c, v in rows.get(n, {}).items()} for n in names}

    def write(w: Any) -> dict:
        res = ModelTable(title, table, provenance=prov)
        t, f = w.result(name, res)
        w.section(Section(f"Comparison: {title}", description + " " + res.summary(), tables=t, figures=f))
        return {n: {c: (v.value if isinstance(v, Estimate) else v) for c, v in r.items()} for n, r in table.items()}
    return ctx.step(step, write, models=models)
