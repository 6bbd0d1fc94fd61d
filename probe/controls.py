"""The token-artifact control: how much of a probe's score is a label-correlated token?

Nguyen et al. (2025) warn that answer-format tokens such as "(A)" let a probe read a token
instead of a concept. This control measures it on any labelled set:

1. *with artifact*: a token correlated with the label is appended (``artifact[label]``, e.g.
   "(A)" for class 1 and "(B)" for class 0) and read at that token; a probe is trained on the
   training split and tested on the test split;
2. *artifact removed*: the same probe scores the test prompts without the token (read at the
   last prompt token);
3. *artifact swapped*: the same probe scores the test prompts with the other class's token (a
   probe that reads the token is pushed below chance);
4. *clean*: a probe trained and tested without the token (the concept's own signal).

``explained = (AUROC_with - AUROC_removed) / (AUROC_with - 0.5)`` is the share of the probe's
above-chance score that disappears with the token (1: all of it is the token; 0: none), with a
paired bootstrap CI over test examples (clusters kept whole). Its precision is that of
``AUROC_removed`` divided by ``AUROC_with - 0.5``: with ``m`` test examples per class the
interval is about ``+-0.8 / sqrt(m)`` wide for a near-perfect artifact, so use at least ~50
test examples per class for a clear answer.

Cost: the artifact-free activations are the ordinary last-prompt-token reads, which a caller
usually has already (pass ``removed=``); the with-artifact condition needs one forward pass per
example and the swapped one only per test example. Per-condition AUROCs use analytic
(clustered DeLong) intervals; only the explained fraction, a ratio, is bootstrapped.

For sets whose contrast already *is* an appended answer (the evaluation-awareness contrastive
set, CAA pairs), pass ``artifact=None``: the outputs are the artifact, "removed" reads the last
prompt token (both examples of a pair then share their activations), and "swapped" is skipped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from workbench.results import Provenance
from workbench.stats import Estimate, IndexedAUROC, StatsError, bootstrap

from .activations import collect_cached
from .batched import fit_logistic_batched, project
from .datasets import LabelledPromptSet
from .metrics import auroc_estimate
from .splits import as_groups, train_test_split

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["TokenArtifactResult", "token_artifact_control", "artifact_effect"]

CONDITIONS = ("with_artifact", "artifact_removed", "artifact_swapped", "clean")


@dataclass
class TokenArtifactResult:
    """Per-layer AUROC under each condition and the explained fraction (all with CIs)."""

    layers: list[int]
    site_kind: str
    artifact: tuple[str, ...] | None
    auroc: dict[str, list[Estimate]]
    explained: list[Estimate | None]
    n_train: int
    n_test: int
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for i, L in enumerate(self.layers):
            for cond, ests in self.auroc.items():
                e = ests[i]
                rows.append({"layer": L, "quantity": f"auroc_{cond}", "value": e.value, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n": e.n, "method": e.method})
            e = self.explained[i]
            if e is not None:
                rows.append({"layer": L, "quantity": "explained_fraction", "value": e.value, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n": e.n, "method": e.method})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        lines = [f"token-artifact control ({self.artifact or 'existing outputs'}), {self.n_train} train / "
                 f"{self.n_test} test"]
        for i, L in enumerate(self.layers):
            parts = [f"{c}={self.auroc[c][i].value:.3f}" for c in self.auroc]
            ex = self.explained[i]
            parts.append(f"explained={ex}" if ex is not None else "explained=n/a")
            lines.append(f"  layer {L}: " + ", ".join(parts))
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def artifact_effect(with_scores: Any, removed_scores: Any, labels: Any, groups: Sequence[Any] | None = None, *,
                    n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """``(AUROC_with - AUROC_removed) / (AUROC_with - 0.5)`` with a paired bootstrap CI (the same
    resampled test examples score both)."""
    s1, s0 = np.asarray(with_scores, float), np.asarray(removed_scores, float)
    y = np.asarray(labels).astype(int)
    a1, a0 = IndexedAUROC(s1, y), IndexedAUROC(s0, y)

    def frac(idx, axis=-1):
        w, r = a1(idx), a0(idx)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.abs(w - 0.5) > 1e-12, (w - r) / (w - 0.5), np.nan)

    g = np.asarray(groups) if groups is not None else None
    clusters = g is not None and np.unique(g).size < g.size
    est = bootstrap(np.arange(y.size), frac, groups=list(g) if clusters else None, n_resamples=n_resamples,
                    seed=seed, vectorized=True, max_degenerate=0.2)
    return dataclasses.replace(est, statistic="explained_fraction")


def _layer_rows(acts: Any, layers: list[int]) -> torch.Tensor:
    """``[len(layers), n, d]`` rows of an :class:`~probe.activations.Activations` at ``layers``."""
    missing = [L for L in layers if L not in acts.layers]
    if missing:
        raise ValueError(f"the given activations have layers {acts.layers[:6]}... but not {missing}; collect them "
                         "with those layers (or pass layers= that they cover)")
    return acts.x[[acts.layers.index(L) for L in layers]]


def token_artifact_control(model: Model, dataset: LabelledPromptSet, *, artifact: Sequence[str] | None = ("(B)", "(A)"),
                           layers: Any = None, site_kind: str = "resid_post", C: float = 0.1,
                           test_size: float = 0.3, seed: int = 0, device: Any = None, batch_size: int = 16,
                           n_resamples: int = 2000, ci: str = "delong", removed: Any = None,
                           present: Any = None, cache_dir: Any = None, collect_layers: Any = None,
                           progress: bool = False) -> TokenArtifactResult:
    """Measure how much of a probe's score a label-correlated token explains (module docstring).

    Args:
        model: HookedModel.
        dataset: a binary labelled set. With ``artifact`` given its prompts are used (any
            existing output is replaced by the artifact token); with ``artifact=None`` its outputs
            are the artifact.
        artifact: ``artifact[label]`` is appended to each prompt (default: "(B)" for class 0,
            "(A)" for class 1).
        layers: layers to probe (default all). C: logistic regularisation (fixed; no CV here).
        ci: interval of the per-condition AUROCs (``"delong"``: analytic, clustered by the set's
            groups; ``"bootstrap"``). The explained fraction is a ratio: always a paired
            (cluster) bootstrap with ``n_resamples``.
        removed: activations of the prompts without the artifact, read at the last prompt token
            (an :class:`~probe.activations.Activations` of this set covering ``layers``), when
            the caller has them already: they are reused instead of collected again. Only the
            artifact conditions then need forward passes (the swapped one on the test rows only).
        present: with ``artifact=None``, the set's activations read at its outputs (``read="last"``)
            when the caller has them (e.g. from its layer sweep).
        cache_dir: keep the activations this control collects there between runs
            (:func:`probe.activations.collect_cached`).
        collect_layers: collect these layers (e.g. ``"all"``) and probe ``layers`` among them, so
            a cached rerun can probe other layers without forward passes.
    """
    if dataset.n_classes != 2:
        raise ValueError(f"the token-artifact control needs a binary set; {dataset.name} has {dataset.n_classes} classes")
    from workbench.layers import resolve_layers

    y = dataset.labels
    g = as_groups(dataset.groups, len(y))
    train, test = train_test_split(y, g, test_size=test_size, seed=seed)
    Ls = resolve_layers(model, layers)
    CL = Ls if collect_layers is None else resolve_layers(model, collect_layers)
    if not set(Ls) <= set(CL):
        raise ValueError(f"collect_layers {CL} must include layers {Ls}")
    kw = dict(layers=CL, site_kind=site_kind, batch_size=batch_size, progress=progress)
    sel = [CL.index(L) for L in Ls]
    notes = []
    if removed is not None:
        if removed.n != len(dataset) or not np.array_equal(np.asarray(removed.labels), y):
            raise ValueError(f"removed= has {removed.n} examples whose labels differ from {dataset.name}'s {len(y)}; "
                             "pass the activations of this very set")
        if removed.read != "last_prompt":
            raise ValueError(f"removed= was read at {removed.read!r}; the artifact-free condition reads the last "
                             "prompt token ('last_prompt')")
        x_removed = _layer_rows(removed, Ls)
    test_idx = np.flatnonzero(test)
    if artifact is not None:
        if len(artifact) != 2:
            raise ValueError(f"artifact must give one token per class (2); got {artifact!r}")
        base = dataclasses.replace(dataset, examples=[dataclasses.replace(e, output=None) for e in dataset.examples],
                                   read="last_prompt")
        with_art = dataclasses.replace(base, examples=[dataclasses.replace(e, output=artifact[int(e.label)])
                                                       for e in base.examples], read="last")
        swapped = dataclasses.replace(base, examples=[dataclasses.replace(base.examples[i],
                                                                          output=artifact[1 - int(y[i])])
                                                      for i in test_idx], read="last")
        x = {"with_artifact": collect_cached(model, with_art, cache_dir, **kw).x[sel],
             "artifact_swapped_test": collect_cached(model, swapped, cache_dir, **kw).x[sel]}
        if removed is None:
            x_removed = collect_cached(model, base, cache_dir, **kw).x[sel]
    else:
        if any(not e.output for e in dataset.examples):
            raise ValueError("artifact=None uses the set's outputs as the artifact, but some examples have none")
        if present is not None:
            if present.n != len(dataset) or present.read != "last":
                raise ValueError(f"present= has {present.n} examples read at {present.read!r}; expected "
                                 f"{len(dataset)} read at the output ('last')")
            x = {"with_artifact": _layer_rows(present, Ls)}
        else:
            x = {"with_artifact": collect_cached(model, dataset.with_read("last"), cache_dir, **kw).x[sel]}
        if removed is None:
            x_removed = collect_cached(model, dataset.with_read("last_prompt"), cache_dir, **kw).x[sel]
        notes.append("artifact = the set's own outputs; 'removed' reads the last prompt token")
    w = train.astype(np.float32)
    fit_art = fit_logistic_batched(x["with_artifact"], y, w, C=C, device=device)
    fit_clean = fit_logistic_batched(x_removed, y, w, C=C, device=device)
    dec = {
        "with_artifact": project(x["with_artifact"], fit=fit_art, device=device, rows=test)["logit"][:, 0, :, 0],
        "artifact_removed": project(x_removed, fit=fit_art, device=device, rows=test)["logit"][:, 0, :, 0],
    }
    if artifact is not None:
        dec["artifact_swapped"] = project(x["artifact_swapped_test"], fit=fit_art, device=device)["logit"][:, 0, :, 0]
    dec["clean"] = project(x_removed, fit=fit_clean, device=device, rows=test)["logit"][:, 0, :, 0]
    dec = {c: v.numpy() for c, v in dec.items()}  # [L, n_test] each, in test-row order
    yte, gte = y[test], g[test]
    auroc: dict[str, list[Estimate]] = {c: [] for c in CONDITIONS if c in dec}
    explained: list[Estimate | None] = []
    for li, L in enumerate(Ls):
        for c in auroc:
            s = dec[c][li]
            if np.ptp(s) <= 1e-9 * max(1.0, float(np.abs(s).max())):
                auroc[c].append(Estimate(0.5, 0.5, 0.5, n=s.size, method="constant scores", statistic="auroc",
                                         notes=("every test example gets the same score: AUROC is 0.5 exactly",)))
                continue
            auroc[c].append(auroc_estimate(s, yte, gte, ci=ci, n_resamples=n_resamples, seed=seed))
        try:
            explained.append(artifact_effect(dec["with_artifact"][li], dec["artifact_removed"][li], yte, gte,
                                             n_resamples=n_resamples, seed=seed))
        except StatsError as e:
            explained.append(None)
            notes.append(f"layer {L}: explained fraction undefined ({e})")
    prov = model.provenance(data_hash=dataset.data_hash(), seed=seed,
                            sites=tuple(f"{site_kind}.{L}" for L in Ls),
                            extra={"method": "token_artifact_control", "artifact": list(artifact) if artifact else None,
                                   "C": C, "ci": ci})
    return TokenArtifactResult(list(Ls), site_kind, tuple(artifact) if artifact else None, auroc, explained,
                               int(train.sum()), int(test.sum()), prov, notes)
