"""Surface-feature baseline: what a probe must beat before it is said to read a concept.

A prompt set whose classes differ in length, punctuation or answer options can be separated
without any model at all. :func:`surface_baseline` fits the same logistic probe as
:func:`probe.sweep.layer_sweep` on surface features only (:func:`surface_features`: characters,
words, optional token counts, and counts of ``?``, ``!``, ``:``, newlines, digits and answer-option
markers such as ``A)``, ``(B)``, ``1.``; log1p-scaled), on the same splits as the probe's sweep (the
main split and the held-out-template folds, given the same labels, templates and seed), and reports
its AUROC with intervals. A layer's probe *beats the surface baseline* only when its AUROC interval
lies wholly above the baseline's (:func:`beats`), condition by condition
(:meth:`SurfaceBaselineResult.compare`). :meth:`SurfaceBaselineResult.transfer` scores a transfer
set with the baseline trained here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from workbench.errors import InputError
from workbench.results import Provenance
from workbench.stats import Estimate

from .metrics import auroc_estimate
from .probes import LinearProbe
from .sweep import LayerSweepResult, layer_sweep

__all__ = ["SURFACE_FEATURES", "SurfaceError", "surface_features", "surface_baseline", "SurfaceBaselineResult",
           "beats"]

SURFACE_FEATURES = ("characters", "words", "question_marks", "exclamation_marks", "colons", "newlines", "digits",
                    "answer_options")
#: answer-option markers: "A)", "(B)", "c.", "1.", "(2)" at the start of a line or after whitespace
_OPTION = re.compile(r"(?:^|(?<=\s))(?:\([A-Ha-h1-9]\)|[A-Ha-h1-9][\).])(?=\s|$)", re.M)


class SurfaceError(InputError):
    """Bad input to the surface-feature baseline."""


def surface_features(prompts: Sequence[Any], token_counts: Sequence[int] | None = None) -> tuple[np.ndarray, tuple]:
    """``([n, F] float array of raw counts, feature names)`` for plain-text prompts (chat message
    lists are joined by their contents). ``token_counts``: one token count per prompt, added as a
    ``tokens`` feature (the model's tokenizer; the rest are model-free)."""
    texts = []
    for p in prompts:
        if isinstance(p, str):
            texts.append(p)
        elif isinstance(p, (list, tuple)) and all(isinstance(m, dict) and "content" in m for m in p):
            texts.append("\n".join(str(m["content"]) for m in p))
        else:
            raise SurfaceError(f"surface features need text prompts (or chat message lists); got {type(p).__name__}")
    if not texts:
        raise SurfaceError("no prompts given")
    rows = [[len(t), len(t.split()), t.count("?"), t.count("!"), t.count(":"), t.count("\n"),
             sum(c.isdigit() for c in t), len(_OPTION.findall(t))] for t in texts]
    names = SURFACE_FEATURES
    X = np.asarray(rows, float)
    if token_counts is not None:
        tc = np.asarray(token_counts, float)
        if tc.shape != (len(texts),):
            raise SurfaceError(f"token_counts has {tc.size} entries for {len(texts)} prompts")
        X = np.concatenate([tc[:, None], X], 1)
        names = ("tokens",) + names
    return X, names


def beats(a: Estimate, b: Estimate) -> bool:
    """Does estimate ``a`` beat ``b``: ``a``'s interval lies wholly above ``b``'s (a conservative
    test; overlapping intervals are "not shown")."""
    return bool(a.ci_low > b.ci_high)


@dataclass
class SurfaceBaselineResult:
    """The surface-feature logistic baseline, fitted and scored on a probe's splits.

    Attributes:
        feature_names: the features (log1p of counts, standardised by the fit).
        sweep: the baseline's one-"layer" :class:`~probe.sweep.LayerSweepResult` (layer 0 = the
            surface features): main split, held-out templates, label-shuffle control.
        probe: the baseline trained on the main training split (for :meth:`score`, :meth:`transfer`).
        token_counts: whether a ``tokens`` feature was given.
    """

    feature_names: tuple[str, ...]
    sweep: LayerSweepResult
    probe: LinearProbe
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    @property
    def conditions(self) -> list[str]:
        return [c for c in ("main", "held_out_templates") if c in self.sweep.conditions]

    def auroc(self, condition: str = "main") -> Estimate:
        return self.sweep.estimates("logistic", condition)[0]

    def score(self, prompts: Sequence[Any], token_counts: Sequence[int] | None = None) -> np.ndarray:
        """Decision values of the baseline on new prompts (positive favours class 1)."""
        X, names = surface_features(prompts, token_counts)
        if names != self.feature_names:
            raise SurfaceError(f"features {names} differ from the fitted {self.feature_names} (token_counts given to "
                               "one and not the other?)")
        return self.probe.decision(np.log1p(X))

    def transfer(self, prompts: Sequence[Any], labels: Any, groups: Any = None, *, token_counts: Any = None,
                 ci: str = "auto", n_resamples: int = 2000, seed: int = 0) -> Estimate:
        """AUROC of the baseline (trained here) on a transfer set."""
        return auroc_estimate(self.score(prompts, token_counts), labels, groups, ci=ci, n_resamples=n_resamples,
                              seed=seed)

    def compare(self, sweep: LayerSweepResult, method: str | None = None):
        """Per layer of a probe's sweep (same splits): its AUROC, the baseline's, and whether the
        probe beats the baseline (:func:`beats`), on the main split and on held-out templates."""
        import pandas as pd

        out: dict[str, list] = {"layer": list(sweep.layers)}
        for c in self.conditions:
            try:
                probe = sweep.estimates(method, c)
            except KeyError:
                continue
            base = self.auroc(c)
            out[f"{c}_auroc"] = [e.value for e in probe]
            out[f"{c}_ci"] = [f"[{e.ci_low:.3f}, {e.ci_high:.3f}]" for e in probe]
            out[f"surface_{c}_auroc"] = base.value
            out[f"surface_{c}_ci"] = f"[{base.ci_low:.3f}, {base.ci_high:.3f}]"
            out[f"beats_surface_{c}"] = [beats(e, base) for e in probe]
        return pd.DataFrame(out)

    def to_dataframe(self):
        df = self.sweep.to_dataframe()
        df = df[df["method"] == "logistic"].drop(columns=["layer"])
        df.insert(0, "baseline", "surface features: " + ", ".join(self.feature_names))
        return df.reset_index(drop=True)

    def summary(self) -> str:
        s = [f"surface-feature baseline ({', '.join(self.feature_names)})"]
        s += [f"  {c}: AUROC {self.auroc(c)}" for c in self.conditions]
        s += [f"note: {n}" for n in self.notes]
        return "\n".join(s)


def surface_baseline(prompts: Sequence[Any], labels: Any, *, groups: Any = None, templates: Any = None,
                     split: tuple[Any, Any] | None = None, token_counts: Sequence[int] | None = None,
                     seed: int = 0, test_size: float = 0.25, C: float | str = "cv", n_resamples: int = 2000,
                     provenance: Provenance | None = None) -> SurfaceBaselineResult:
    """Fit and score the surface-feature baseline on a probe's splits.

    Pass the probe sweep's ``split=(sweep.train, sweep.test)``, and the same ``templates`` and
    ``seed``: the held-out-template folds are then the sweep's own (same labels, templates, seed
    and fold count). Binary labels only.
    """
    X, names = surface_features(prompts, token_counts)
    y = np.asarray(labels)
    if y.shape[0] != X.shape[0]:
        raise SurfaceError(f"{y.shape[0]} labels for {X.shape[0]} prompts")
    if np.unique(y).size != 2:
        raise SurfaceError(f"the surface baseline is binary; got {np.unique(y).size} classes")
    feats = np.log1p(X)[None].astype(np.float32)  # one pseudo-layer [1, n, F]
    sw = layer_sweep(feats, y, groups=groups, templates=templates, split=split, seed=seed, test_size=test_size,
                     C=C, methods=("logistic",), n_resamples=n_resamples,
                     site_kind="surface_features", device="cpu", provenance=provenance)
    notes = [n for n in sw.notes if "L-BFGS" not in n]
    const = [nm for nm, col in zip(names, X.T) if np.ptp(col) == 0]
    if const:
        notes.append(f"constant on this set: {const}")
    prov = (provenance or Provenance()).replace(seed=seed, extra={"method": "surface_baseline",
                                                                  "features": list(names)})
    return SurfaceBaselineResult(tuple(names), sw, sw.probes["logistic"][0], prov, notes)
