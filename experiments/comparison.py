"""Comparison sections of a run over several models (``workbench run cross-check --model A --model B ...``).

Built from what each (model, study) step stored (its payload and its cross-check JSON), never by running a model
again; each is one resumable step that depends on every model's weights:

- ``compare-probe``: the evaluation-awareness probe's AUROC per layer of every model on one figure, the layer as
  a fraction of depth (:class:`workbench.comparison.LayerCurves`);
- ``compare-personas``: per model, personas ranked by their effect (by prompt and by steering, per scorer; for
  the refusal scorer the *drop* in refusals, so rank 1 is the most dangerous persona), and Spearman with its
  CI between every pair of models (:class:`workbench.comparison.RankAgreement`);
- ``compare-induction``: per model the top induction heads and the copying damage of ablating them vs
  matched random heads (targeted - random, stratified bootstrap) (:class:`workbench.comparison.ModelTable`);
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
COMPARISONS = ("compare-probe", "compare-personas", "compare-induction", "compare-lens-patching")


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
    from workbench.comparison import LayerCurves, ModelTable, rank_agreement
    from workbench.results import Provenance
    from workbench.stats import Estimate

    names = [n for n, _ in models]
    hashes = {n: ctx.manifest.get("models", {}).get(n, {}).get("weights_hash") for n in names}
    prov = Provenance(model=", ".join(names), seed=seed, extra={"models": hashes})

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

    if any(("induction", n) in payloads for n in names):
        def induction(w: Any) -> dict:
            import numpy as np

            from workbench.comparison import depth_fraction
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
    from workbench.results import Provenance
    from workbench.stats import Estimate

    from .writer import _slug

    names = [n for n, _ in models]
    hashes = {n: ctx.manifest.get("models", {}).get(n, {}).get("weights_hash") for n in names}
    prov = Provenance(model=", ".join(names), seed=seed, extra={"models": hashes})

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


def compare_headlines(ctx: RunContext, step: str, title: str, description: str, models: Sequence[tuple[str, str]],
                      rows: dict[str, dict[str, Any]], *, seed: int = 0, name: str = "by_model") -> dict:
    """A comparison step: each model's headline numbers side by side (:class:`workbench.comparison.ModelTable`:
    a table, and a figure of every estimate column with its CI). ``rows``: ``{model: {column: value}}``, a value an
    :class:`~workbench.stats.Estimate`, its ``to_dict()``, a number, a string or None; built from what each
    model's steps stored, never by running a model again. The step depends on exactly ``models``' weights."""
    from workbench.comparison import ModelTable
    from workbench.results import Provenance
    from workbench.stats import Estimate

    names = [n for n, _ in models]
    hashes = {n: ctx.manifest.get("models", {}).get(n, {}).get("weights_hash") for n in names}
    prov = Provenance(model=", ".join(names), seed=seed, extra={"models": hashes})

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
