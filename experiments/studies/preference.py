"""Probes for the six reward-model preference dimensions, and the harmlessness probe vs the model's preference.

Linear probes for harmlessness, helpfulness, correctness, coherence, complexity and verbosity
(MRMBench protocol: read at the last token of input + response; the final layer, plus a sweep over
layers with controls; :func:`probe.preference.preference_probes`). On the easy split with
harmlessness among the dimensions, the cross-check: internal, per held-out HH-RLHF pair, the
harmlessness probe's score of the chosen response minus the rejected one (best layer); behavioural,
the model's own per-token ``log p`` of the chosen response minus the rejected one given the dialogue
(shared log-prob scorer). Expected: positive (a model whose representation separates harmless from
harmful answers also prefers to say them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from workbench.layers import LayerSpec

from ..study import StudyResult, estimate_dict, fits_context, skipped

__all__ = ["PreferenceStudy", "compute", "run", "step_name"]

TITLE = "Preference dimensions: probes, and harmlessness vs the model's own preference"


@dataclass
class PreferenceStudy:
    """``[preference]``: preference-dimension probes (one step per split: ``preference-<split>``).

    Attributes:
        enabled: run this study.
        dimensions: dimensions to probe (``probe.preference.DIMENSIONS``); empty: all six.
        splits: ``easy`` (binary) and/or ``hard`` (3 classes).
        layers: layers to sweep (a layer spec); the final layer is always included.
        limit: records per dimension (0: every record).
        n_resamples: bootstrap resamples of every interval.
    """

    enabled: bool = True
    dimensions: list[str] = field(default_factory=list)
    splits: list[Literal["easy", "hard"]] = field(default_factory=lambda: ["easy", "hard"])
    layers: list[LayerSpec] = field(default_factory=lambda: ["all"])
    limit: int = field(default=150, metadata={"zero": "every record"})
    n_resamples: int = 1000


def step_name(split: str) -> str:
    return f"preference-{split}"


def compute(ctx: Any, m: Any, cfg: PreferenceStudy, split: str, *, seed: int = 0) -> StudyResult:
    from probe.preference import DIMENSIONS, build_preference_set, preference_probes
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layers
    from workbench.scorers import continuation_logprobs

    dims = list(cfg.dimensions) or list(DIMENSIONS)
    limit = cfg.limit or None
    sets, notes = {}, []
    for d in dims:
        ds = build_preference_set(d, split, seed=seed, limit=limit)
        chat = bool(m.facts.has_chat_template) if ds.chat is None else bool(ds.chat)
        fit = fits_context(m, [e.prompt for e in ds.examples], chat=chat, system=ds.system,
                           continuations=[e.output for e in ds.examples])
        if not all(fit):
            notes.append(f"{d}: dropped {fit.count(False)} of {len(ds)} records longer than {m.name}'s context "
                         f"({m.facts.n_ctx} tokens)")
            ds = ds.subset([i for i, ok in enumerate(fit) if ok])
        counts = [int((ds.labels == c).sum()) for c in range(len(ds.label_names))] if len(ds) else [0]
        if min(counts) < 4:
            notes.append(f"{d}: left out, fewer than 4 records of some class fit {m.name}'s context")
            continue
        sets[d] = ds
    dims = [d for d in dims if d in sets]
    if not dims:
        return skipped("Preference dimensions", "preference", f"no dimension has enough records that fit "
                       f"{m.name}'s context ({m.facts.n_ctx} tokens)", notes=notes)
    res = preference_probes(m, dims, split=split, layers=resolve_layers(m, cfg.layers), datasets=sets, limit=limit,
                            seed=seed, n_resamples=cfg.n_resamples, progress=ctx.progress)
    table = res.summary_table()
    metrics = {}
    for d in dims:
        metrics[f"{d}: final-layer AUROC"] = estimate_dict(res.final[d])
        L, e = res.best[d]
        metrics[f"{d}: best layer {L} AUROC"] = estimate_dict(e)
    results = {"preference": res}
    tables = {"preference_summary": table.reset_index() if table.index.name else table}
    plain = dict(results=results, tables_off=("preference",),
                 tables={**tables, "preference_layers": res.to_dataframe()}, metrics=metrics,
                 notes=notes + list(res.notes)[:5])
    if "harmlessness" not in dims or split != "easy":
        return StudyResult("Preference dimensions", "Linear probes per dimension (MRMBench protocol).", "preference",
                           **plain)
    sw = res.sweeps["harmlessness"]
    L = res.best["harmlessness"][0]
    li = sw.layers.index(L)
    ds = sets["harmlessness"]
    test = np.flatnonzero(np.asarray(sw.test, bool))
    scores = np.asarray(sw.test_scores["logistic"][li], float)
    exs = [ds.examples[i] for i in test]
    chat = bool(ds.chat) if ds.chat is not None else not isinstance(exs[0].prompt, str)
    lp = continuation_logprobs(m, [e.prompt for e in exs], [e.output for e in exs], chat=chat,
                               **({"system": ds.system} if chat and ds.system else {}))
    per_tok = np.asarray(lp.mean_per_token, float)
    by: dict = {}
    for e, s, lpt in zip(exs, scores, per_tok):
        by.setdefault(e.group, {})[e.label] = (s, lpt)
    pairs = [(g, v) for g, v in by.items() if 0 in v and 1 in v]
    units = [str(g) for g, _ in pairs]
    dint = np.array([v[1][0] - v[0][0] for _, v in pairs])
    dbeh = np.array([v[1][1] - v[0][1] for _, v in pairs])
    cc = CrossCheck.from_measurements(units, dint, dbeh, internal_name="probe score chosen - rejected",
                                      behavioural_name="log p per token chosen - rejected", unit_name="pair",
                                      seed=seed, provenance=m.provenance(seed=seed, extra={"study": "preference",
                                                                                           "layer": L}))
    return StudyResult(
        TITLE,
        f"Linear probes for {', '.join(dims)} ({split} split; MRMBench protocol: read at the last token of "
        "input + response, final layer, plus a sweep over layers with controls). Cross-check over the "
        f"{len(units)} held-out HH-RLHF harmless pairs: the harmlessness probe's score difference at layer {L} "
        "(internal) against the model's per-token log p of the chosen over the rejected response "
        "(behaviour, shared log-prob scorer); expected positive.",
        "preference", cc, **plain)


def run(ctx: Any, m: Any, cfg: PreferenceStudy, split: str, *, seed: int = 0, step: str | None = None) -> dict:
    return ctx.study(step or step_name(split), lambda: compute(ctx, m, cfg, split, seed=seed))
