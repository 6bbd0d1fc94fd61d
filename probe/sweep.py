"""Layer sweeps with controls: where does the model represent a label, and is it real?

:func:`layer_sweep` fits a probe at every layer (logistic regression, batched over layers and
problems on CPU or GPU, and the mean-difference direction) on a group-aware train split and
reports test AUROC and accuracy with confidence intervals. Every sweep runs its controls in the
same batched fit:

- ``label_shuffle``: the same probe trained on permuted training labels, scored against the
  true test labels (a control task in the sense of Hewitt & Liang 2019: a probe that reaches
  high accuracy on shuffled labels memorises rather than reads). Reported as the mean over
  ``n_shuffles`` shuffles, with an interval that includes the between-shuffle variance; the
  control is "at chance" when no layer differs from 0.5 after Holm's correction across layers.
  Selectivity = accuracy minus control accuracy, with a paired interval.
- ``random_direction``: random unit directions, each oriented on the training set, scored on
  the test set: how well an arbitrary direction separates the classes. A baseline, not a null:
  it exceeds 0.5 when the classes differ along many directions.
- ``held_out_templates``: cross-validation over templates (every example scored by a probe
  that never saw its template): a probe that reads template surface features rather than the
  concept collapses here (Nguyen et al. 2025: hold out templates).

Statistics are proportionate (see :mod:`probe.metrics`): every (layer, method, condition)
number gets an analytic interval (DeLong, cluster-robust per Obuchowski 1997 when groups such
as contrastive pairs cluster); the headline numbers, the best layer's main and held-out-template
AUROC, are recomputed with a (cluster) bootstrap of ``n_resamples`` resamples.

The token-artifact control needs the model; see :func:`probe.controls.token_artifact_control`.

The features may be in memory or in a disk-backed :class:`~workbench.store.ActivationStore`
(streamed shard by shard: memory does not grow with the number of examples, beyond a few
numbers per example).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from workbench.results import Provenance, data_hash
from workbench.stats import Estimate, StatsError, holm

from ._problems import _prepare
from .batched import BatchedFit, default_device, fit_logistic_batched, fit_stats, project
from .features import as_features
from .metrics import _paired_difference, accuracy_estimate, auroc_estimate, macro_auroc_estimate, mean_auroc_estimate
from .probes import DEFAULT_CS, LinearProbe
from .selection import LayerChoice, _tiebreak
from .splits import SplitError, as_groups, check_no_leak, group_kfold, train_test_split

__all__ = ["LayerScore", "LayerSweepResult", "LayerChoice", "layer_sweep", "METHODS", "CONDITIONS"]

METHODS = ("logistic", "mean_diff")
CONDITIONS = ("main", "held_out_templates", "label_shuffle", "random_direction")


@dataclass(frozen=True)
class LayerScore:
    """One number of a sweep: ``metric`` of ``method`` under ``condition`` at ``layer``."""

    layer: int
    method: str
    condition: str
    metric: str
    estimate: Estimate


@dataclass
class LayerSweepResult:
    """Per-layer probe metrics with CIs, the controls, and the fitted probes.

    Attributes:
        layers: layer ids. site_kind: e.g. ``"resid_post"``.
        scores: every :class:`LayerScore` (see :meth:`to_dataframe`).
        probes: ``{method: {layer: LinearProbe}}`` trained on the main training split.
        label_names: class names (index = label).
        train, test: boolean masks of the main split (over examples).
        test_scores: ``{method: [n_layers, n_test]}`` main-condition decision values on the test set.
        settings: C per layer, seeds, split sizes, solver diagnostics.
        provenance: model, data hash, seed, sites.
        notes: what was skipped and why.
        held_out_scores: ``{method: [n_layers, n]}`` held-out-template decision values (every example
            scored by the fold's probe that did not see its template; binary only).
        labels: the encoded label of every example (index into ``label_names``).
    """

    layers: list[int]
    site_kind: str
    scores: list[LayerScore]
    probes: dict[str, dict[int, LinearProbe]]
    label_names: tuple[str, ...]
    train: np.ndarray
    test: np.ndarray
    test_scores: dict[str, np.ndarray]
    settings: dict
    provenance: Provenance
    notes: list[str] = field(default_factory=list)
    held_out_scores: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None

    # -- access ------------------------------------------------------------------------
    def estimates(self, method: str | None = None, condition: str = "main", metric: str = "auroc") -> list[Estimate]:
        """Estimates per layer (in ``layers`` order) for one method/condition/metric."""
        method = self._method(method)
        got = {s.layer: s.estimate for s in self.scores
               if s.method == method and s.condition == condition and s.metric == metric}
        if not got:
            have = sorted({(s.method, s.condition, s.metric) for s in self.scores})
            raise KeyError(f"no scores for ({method}, {condition}, {metric}); have {have}")
        return [got[L] for L in self.layers]

    def values(self, method: str | None = None, condition: str = "main", metric: str = "auroc") -> np.ndarray:
        return np.array([e.value for e in self.estimates(method, condition, metric)])

    def best_layer(self, method: str | None = None, metric: str = "auroc", condition: str = "main") -> int:
        """The layer with the highest point estimate. Ties (common when several layers separate
        the test split perfectly) go to the layer whose probe does best on held-out templates,
        when that control ran, then to the earliest."""
        method = self._method(method)
        v = self.values(method, condition, metric)
        tied = np.flatnonzero(v >= v.max() - 1e-12)
        if tied.size > 1 and condition == "main" and "held_out_templates" in self.conditions:
            try:
                ho = self.values(method, "held_out_templates", metric)[tied]
                tied = tied[ho >= ho.max() - 1e-12]
            except KeyError:
                pass
        return int(self.layers[int(tied[0])])

    def choose_layer(self, method: str | None = None, *, transfer: tuple[Any, Any] | None = None) -> LayerChoice:
        """The layer to read the probe at, chosen on held-out data (see :class:`LayerChoice`).

        ``transfer``: ``(decisions [n_layers, m], labels [m])`` of every layer's probe on a transfer
        set (in ``layers`` order); when given, the choice is made there. Otherwise on the held-out-
        template scores when that control ran, else on the main test split. Binary probes only.
        """
        method = self._method(method)
        if self.labels is None:
            raise SplitError("this sweep result carries no labels (made by an older version); rerun layer_sweep")
        if len(self.label_names) != 2:
            raise SplitError(f"choose_layer needs a binary probe; this sweep has {len(self.label_names)} classes")
        if transfer is not None:
            dec, yy = np.asarray(transfer[0], float), np.asarray(transfer[1]).astype(int)
            if dec.ndim != 2 or dec.shape != (len(self.layers), yy.size):
                raise SplitError(f"transfer decisions must be [n_layers={len(self.layers)}, n={yy.size}]; got "
                                 f"{dec.shape}")
            if np.unique(yy).size != 2:
                raise SplitError("the transfer set needs both classes")
            from .metrics import auc_rows

            auc = list(np.nan_to_num(auc_rows(dec, np.repeat((yy == 1)[None], dec.shape[0], 0)), nan=0.5))
            where = "transfer"
        elif method in self.held_out_scores:
            dec = self.held_out_scores[method]
            yy = self.labels
            auc = list(self.values(method, "held_out_templates"))
            where = "held_out_templates"
        else:
            dec = self.test_scores[method]
            yy = self.labels[self.test]
            auc = list(self.values(method, "main"))
            where = "main"
        yy = np.asarray(yy).astype(int)
        tb = [_tiebreak(d, yy, method) for d in dec]
        name, crit = tb[0][0], [t[1] for t in tb]
        a = np.asarray(auc, float)
        tied = np.flatnonzero(a >= a.max() - 1e-9)
        best = int(tied[np.argmin(np.asarray(crit)[tied])])
        return LayerChoice(int(self.layers[best]), method, where, name, list(self.layers), [float(x) for x in a],
                           crit, [int(self.layers[t]) for t in tied])

    def _method(self, method: str | None) -> str:
        """``method``, or by default ``"logistic"`` when the sweep fitted it, else its first method."""
        if method is not None:
            return method
        ms = self.methods
        return "logistic" if ("logistic" in ms or not ms) else ms[0]

    @property
    def methods(self) -> list[str]:
        return sorted({s.method for s in self.scores if s.method in self.probes})

    @property
    def conditions(self) -> list[str]:
        return [c for c in CONDITIONS if any(s.condition == c for s in self.scores)]

    def controls_at_chance(self, method: str | None = None, alpha: float = 0.05) -> dict[str, bool]:
        """Is the label-shuffle control at chance? True when no layer's control AUROC differs
        from 0.5 after Holm's correction across layers (each layer's interval alone would
        exclude 0.5 somewhere in 30 layers most of the time by chance). The random-direction
        control is a baseline, not a null (oriented directions beat 0.5 when the classes differ
        along many directions); compare the probe with it via :meth:`estimates`."""
        method = self._method(method)
        out = {}
        try:
            ests = self.estimates(method, "label_shuffle", "auroc")
        except KeyError:
            return out
        p = np.array([e.p_value if e.p_value is not None else 1.0 for e in ests])
        out["label_shuffle"] = not bool(holm(p, alpha=alpha).reject.any()) if len(p) else True
        return out

    def layers_with_ci_containing(self, value: float = 0.5, method: str | None = None,
                                  condition: str = "label_shuffle", metric: str = "auroc") -> list[int]:
        """Layers whose interval for (method, condition, metric) contains ``value``."""
        method = self._method(method)
        return [L for L, e in zip(self.layers, self.estimates(method, condition, metric)) if e.contains(value)]

    def to_dataframe(self):
        """One row per (layer, method, condition, metric): value, CI, stderr, n, p-value, and the
        Holm-adjusted p-value across layers for each (method, condition, metric)."""
        import pandas as pd

        rows = [{"layer": s.layer, "method": s.method, "condition": s.condition, "metric": s.metric,
                 "value": s.estimate.value, "ci_low": s.estimate.ci_low, "ci_high": s.estimate.ci_high,
                 "stderr": s.estimate.stderr, "n": s.estimate.n, "p_value": s.estimate.p_value,
                 "ci_method": s.estimate.method} for s in self.scores]
        df = pd.DataFrame(rows)
        df["p_holm"] = np.nan
        for _, idx in df.groupby(["method", "condition", "metric"]).groups.items():
            p = df.loc[idx, "p_value"]
            ok = p.notna()
            if ok.sum() > 0:
                df.loc[p[ok].index, "p_holm"] = holm(p[ok].to_numpy()).p_adjusted
        return df

    def layer_table(self, method: str | None = None, digits: int = 3):
        """One row per layer: AUROC ``value [low, high]`` of the probe (main split), held-out
        templates, the label-shuffle control and the random-direction baseline, plus the main
        AUROC's p-value after Holm across layers."""
        method = self._method(method)
        import pandas as pd

        def fmt(e):
            return f"{e.value:.{digits}f} [{e.ci_low:.{digits}f}, {e.ci_high:.{digits}f}]"

        cols = {"main": (method, "main"), "held_out_templates": (method, "held_out_templates"),
                "label_shuffle": (method, "label_shuffle"), "random_direction": ("random", "random_direction")}
        out = {"layer": self.layers}
        for name, (m, c) in cols.items():
            try:
                out[name] = [fmt(e) for e in self.estimates(m, c)]
            except KeyError:
                continue
        main = self.estimates(method)
        p = np.array([e.p_value if e.p_value is not None else 1.0 for e in main])
        out["p_holm_main"] = holm(p).p_adjusted
        return pd.DataFrame(out)

    def summary(self, method: str | None = None) -> str:
        """A short text table: best layer, its AUROC, and the controls there."""
        method = self._method(method)
        L = self.best_layer(method)
        i = self.layers.index(L)
        lines = [f"{method} probe on {self.site_kind}, {len(self.layers)} layers, "
                 f"{int(self.train.sum())} train / {int(self.test.sum())} test examples",
                 f"best layer {L}: AUROC {self.estimates(method)[i]}"]
        for c in self.conditions:
            if c == "main":
                continue
            m = "random" if c == "random_direction" else method
            try:
                lines.append(f"  {c}: {self.estimates(m, c)[i]}")
            except KeyError:
                pass
        ctl = self.controls_at_chance(method)
        if "label_shuffle" in ctl:
            inside = self.layers_with_ci_containing(0.5, method, "label_shuffle")
            lines.append(f"  label-shuffle control at chance (Holm across layers): {ctl['label_shuffle']}; "
                         f"CI contains 0.5 at {len(inside)}/{len(self.layers)} layers")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def directions(self, method: str | None = None):
        """The probes' unit directions as a :class:`workbench.vectors.DirectionSet` (for steering)."""
        method = self._method(method)
        from .directions import to_direction_set

        return to_direction_set(self, method=method)


def _labels_from(data: Any, labels: Any, groups: Any, templates: Any):
    """Labels/groups/templates from arguments, an Activations object, or a store's metadata."""
    from workbench.store import ActivationStore

    names = None
    if hasattr(data, "labels") and hasattr(data, "x"):  # Activations
        labels = data.labels if labels is None else labels
        groups = data.groups if groups is None else groups
        templates = data.templates if templates is None else templates
        names = tuple(data.label_names)
    elif isinstance(data, ActivationStore):
        meta = data.prompt_meta()
        if labels is None:
            if not all("label" in r for r in meta):
                raise ValueError(f"the store at {data.dir} has no 'label' in its prompt metadata; pass labels=")
            labels = [r["label"] for r in meta]
        if groups is None and any(r.get("group") is not None for r in meta):
            groups = [r.get("group") or f"_row{r['index']}" for r in meta]
        if templates is None and any(r.get("template") is not None for r in meta):
            templates = [r.get("template") or "_none" for r in meta]
    if labels is None:
        raise ValueError("labels are required (one per example)")
    return labels, groups, templates, names


def _encode_labels(labels: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    y = np.asarray(labels)
    classes = np.unique(y)
    if classes.size < 2:
        raise SplitError(f"all {y.size} examples have label {classes[0] if classes.size else None!r}; a probe needs "
                         "at least two classes")
    if np.issubdtype(y.dtype, np.integer) and classes[0] >= 0 and np.array_equal(classes, np.arange(classes.size)):
        return y.astype(np.int64), tuple(str(c) for c in classes)
    return np.searchsorted(classes, y).astype(np.int64), tuple(str(c) for c in classes)


def _cv_choose_C(feats, y, train, groups, Cs, K, device, seed, inner_folds, max_iter) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer C by inner group k-fold on the training split (all folds x Cs batched). Returns
    (C per layer, mean inner-fold score [L, n_C])."""
    idx = np.flatnonzero(train)
    folds = group_kfold(y[idx], None if groups is None else np.asarray(groups)[idx], inner_folds, seed=seed + 1)
    Y, Wt, Cp, fold_of = [], [], [], []
    for f, (tr, te) in enumerate(folds):
        w = np.zeros(len(y), np.float32)
        w[idx[tr]] = 1
        for C in Cs:
            Y.append(y)
            Wt.append(w)
            Cp.append(C)
            fold_of.append(f)
    fit = fit_logistic_batched(feats, np.stack(Y), np.stack(Wt), C=np.array(Cp), n_classes=K, device=device,
                               max_iter=min(max_iter, 100), tol=1e-4)  # model selection needs no tight optimum
    out = project(feats, fit=fit, device=device, rows=train)["logit"]  # [L, P, n_train, k]
    L = feats.n_layers
    score = np.zeros((L, len(Cs)))
    for p in range(len(Y)):
        te = folds[fold_of[p]][1]  # inner test rows, as a mask over the training rows
        z = out[:, p, te].numpy()
        yt = y[idx[te]]
        if K == 2:
            from .metrics import auc_rows

            s = auc_rows(z[..., 0], yt[None, :].repeat(L, 0) == 1)
        else:
            s = (z.argmax(-1) == yt[None]).mean(-1)
        score[:, p % len(Cs)] += np.nan_to_num(s, nan=0.5) / len(folds)
    best = np.asarray(Cs)[score.argmax(1)]
    return best, score



def auroc_any(dec: np.ndarray, yy: np.ndarray, gg: np.ndarray, how: str, *, n_resamples: int, seed: int) -> Estimate:
    """AUROC of decision values ``[m]`` (binary) or one-vs-rest macro AUROC of ``[m, K]`` (softmaxed), with the
    ``how`` interval (multiclass: DeLong or bootstrap, at most 1000 resamples)."""
    if dec.ndim == 1:
        return auroc_estimate(dec, yy, gg, ci=how, n_resamples=n_resamples, seed=seed)
    probs = torch.softmax(torch.as_tensor(dec), -1).numpy()
    return macro_auroc_estimate(probs, yy, gg, ci="delong" if how == "delong" else "bootstrap",
                                n_resamples=min(n_resamples, 1000), seed=seed)


def headline_numbers(res: "LayerSweepResult", methods: Sequence[str], held_dec: dict[str, np.ndarray],
                     groups: np.ndarray, how: str, *, n_resamples: int, seed: int) -> None:
    """Re-estimate, in place in ``res.scores``, the main and held-out-template AUROC of each method's best layer
    (highest main AUROC; ties to the higher held-out-template AUROC, then the earliest layer) and, for binary
    probes, of its chosen layer (:meth:`LayerSweepResult.choose_layer`) with the ``how`` interval (the headline
    numbers: a bootstrap where the per-layer table used DeLong). ``held_dec``: per method, the held-out-template
    decisions ``[n_layers, n, ...]`` to re-estimate (methods absent: main only)."""
    layers, y = list(res.layers), np.asarray(res.labels)
    test = np.asarray(res.test, bool)

    def headline(method: str, Lb: int, why: str) -> None:
        li = layers.index(Lb)
        redo = [("main", res.test_scores[method][li], y[test], groups[test])]
        if method in held_dec:
            redo.append(("held_out_templates", held_dec[method][li], y, groups))
        for cond, dec, yy, gg in redo:
            try:
                est = auroc_any(dec, yy, gg, how, n_resamples=n_resamples, seed=seed)
            except StatsError:
                continue
            est = dataclasses.replace(est, notes=est.notes + (f"headline number ({why}): bootstrap interval",))
            for i, s_ in enumerate(res.scores):
                if (s_.layer, s_.method, s_.condition, s_.metric) == (Lb, method, cond, "auroc"):
                    res.scores[i] = LayerScore(Lb, method, cond, "auroc", est)

    headlined: dict[str, int] = {}
    for method in methods:
        have = {s.layer: s.estimate.value for s in res.scores
                if s.method == method and s.condition == "main" and s.metric == "auroc"}
        if not have:
            continue
        ho = {s.layer: s.estimate.value for s in res.scores
              if s.method == method and s.condition == "held_out_templates" and s.metric == "auroc"}
        Lb = max(have, key=lambda k: (round(have[k], 12), round(ho.get(k, 0.0), 12), -layers.index(k)))
        headline(method, Lb, "best layer")
        headlined[method] = Lb
    if len(res.label_names) == 2:
        for method, Lb in headlined.items():
            try:
                Lc = res.choose_layer(method).layer
            except (SplitError, KeyError):
                continue
            if Lc != Lb:
                headline(method, Lc, "chosen layer")


def layer_sweep(data: Any, labels: Any = None, groups: Sequence[Any] | None = None, *,
                templates: Sequence[Any] | None = None, methods: Sequence[str] = METHODS, controls: bool = True,
                C: float | str = "cv", Cs: Sequence[float] = DEFAULT_CS, test_size: float = 0.25,
                split: tuple[np.ndarray, np.ndarray] | None = None, n_random_directions: int = 20, n_shuffles: int = 5,
                template_folds: int = 5, inner_folds: int = 3, seed: int = 0, device: Any = None,
                ci: str = "delong", headline_ci: str = "bootstrap", n_resamples: int = 2000, max_iter: int = 300, layers: Sequence[int] | None = None,
                site_kind: str = "resid_post", provenance: Provenance | None = None,
                progress: bool = False) -> LayerSweepResult:
    """Probe every layer and run the controls (see the module docstring).

    Args:
        data: activations ``[n_layers, n, d]`` (array/tensor), ``{layer: [n, d]}``, an
            :class:`~probe.activations.Activations`, or an :class:`~workbench.store.ActivationStore`
            (streamed; labels/groups/templates may come from its prompt metadata).
        labels: one label per example (any two or more values).
        groups: units kept whole on one side of every split (contrastive pairs, topics, sources).
        templates: template/framing id per example for the held-out-template control.
        methods: ``"logistic"`` and/or ``"mean_diff"``.
        controls: run label-shuffle, random-direction and held-out-template controls.
        C: logistic inverse regularisation (float), or ``"cv"`` to choose it per layer from ``Cs``
            by group k-fold on the training split.
        test_size: fraction of groups held out for the main test split (stratified).
        split: explicit ``(train_mask, test_mask)`` instead.
        device: torch device for the batched fit (default: CUDA when available).
        ci: interval for every (layer, method, condition) number: ``"delong"`` (default; analytic,
            cluster-robust when groups cluster) or ``"bootstrap"`` (see :mod:`probe.metrics`).
        headline_ci: interval for the headline numbers, the best layer's main and
            held-out-template AUROC (default ``"bootstrap"`` with ``n_resamples`` resamples).

    Returns:
        :class:`LayerSweepResult`.
    """
    feats = as_features(data, layers=layers, site_kind=site_kind)
    labels, groups, templates, names = _labels_from(data, labels, groups, templates)
    y, enc_names = _encode_labels(labels)
    names = names if names is not None and len(names) == len(enc_names) else enc_names
    n = feats.n
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} examples of activations")
    K = int(y.max()) + 1
    device = torch.device(device) if device is not None else default_device()
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; use {METHODS}")
    methods = [m for m in methods if not (m == "mean_diff" and K > 2)]
    notes: list[str] = []
    if K > 2:
        notes.append(f"{K} classes: mean_diff and random_direction are binary-only and were skipped; AUROC is "
                     "one-vs-rest macro")
    g = as_groups(groups, n)
    if split is None:
        train, test = train_test_split(y, g, test_size=test_size, seed=seed)
    else:
        train, test = (np.asarray(split[0], bool), np.asarray(split[1], bool))
    check_no_leak(train, test, g)
    rng = np.random.default_rng(seed)

    # ---- C per layer
    if C == "cv" and "logistic" in methods:
        C_layer, cv_scores = _cv_choose_C(feats, y, train, g, Cs, K, device, seed, inner_folds, max_iter)
    elif C == "cv":
        C_layer, cv_scores = np.ones(feats.n_layers), None
    else:
        C_layer, cv_scores = np.full(feats.n_layers, float(C)), None

    # ---- problems: main, label shuffle, template folds (all in one batched fit)
    problems: list[tuple[str, np.ndarray, np.ndarray]] = [("main", y, train.astype(np.float32))]
    if controls:
        tr_idx = np.flatnonzero(train)
        for j in range(n_shuffles):
            ys = y.copy()
            ys[tr_idx] = y[tr_idx][rng.permutation(tr_idx.size)]
            problems.append((f"label_shuffle{j}", ys, train.astype(np.float32)))
    tfolds: list[tuple[np.ndarray, np.ndarray]] = []
    if controls and templates is not None:
        t = as_groups(templates, n)
        n_t = np.unique(t).size
        try:
            if n_t < 2:
                raise SplitError("only one template")
            tfolds = group_kfold(y, t, min(template_folds, n_t), seed=seed)
            for f, (tr, te) in enumerate(tfolds):
                for name, mask in (("train", tr), ("test", te)):
                    if np.unique(y[mask]).size < K:
                        raise SplitError(f"template fold {f} has a {name} side without every class")
                problems.append((f"template_fold{f}", y, tr.astype(np.float32)))
        except SplitError as e:
            tfolds = []
            notes.append(f"held-out-template control skipped: {e} (templates must each mix classes, or there must "
                         "be several templates per class)")
    elif controls:
        notes.append("no templates given: the held-out-template control was not run")
    Y = np.stack([p[1] for p in problems])
    Wt = np.stack([p[2] for p in problems])
    P = len(problems)

    fit: BatchedFit | None = None
    if "logistic" in methods:
        fit = fit_logistic_batched(feats, Y, Wt, C=np.repeat(C_layer[:, None], P, 1), n_classes=K, device=device,
                                   max_iter=max_iter)
        stats = fit.stats
    else:
        yt, wt, _ = _prepare(Y, Wt, n, device, K)
        stats = fit_stats(feats, yt, wt, K, device)
    dirs = None
    if "mean_diff" in methods:
        cm = stats.class_means  # [L, P, K, d]
        dirs = (cm[:, :, 1] - cm[:, :, 0]).float()
        md_bias = -(dirs * (cm[:, :, 1] + cm[:, :, 0]) / 2).sum(-1)  # [L, P]
    R = None
    if controls and K == 2:
        gen = torch.Generator().manual_seed(seed)
        R = torch.randn(n_random_directions, feats.d, generator=gen)
        R = R / R.norm(dim=1, keepdim=True)
        mdiff = (stats.class_means[:, 0, 1] - stats.class_means[:, 0, 0]).cpu()  # [L, d]
        sign = torch.sign(mdiff @ R.T)  # [L, Q]
        sign[sign == 0] = 1
    # decision values of the rows that are scored: the test split, or every row when template folds
    # score each row with the probe that did not see its template (memory O(n_scored), not O(n))
    out = project(feats, fit=fit, directions=dirs, shared_directions=R, device=device,
                  rows=None if tfolds else test)
    tcols = test if tfolds else slice(None)  # columns of `out` that are test rows

    # ---- metrics: analytic intervals for the whole grid, bootstrap for the headline numbers
    scores: list[LayerScore] = []
    test_scores: dict[str, np.ndarray] = {}
    probes: dict[str, dict[int, LinearProbe]] = {}
    yte, gte = y[test], g[test]
    Ls = feats.layers
    pnames = [q[0] for q in problems]
    sh = [p for p, q in enumerate(pnames) if q.startswith("label_shuffle")]
    tf_idx = [pnames.index(f"template_fold{f}") for f in range(len(tfolds))]
    it = range(len(Ls))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="layer metrics", unit="layer")

    def auroc_of(dec: np.ndarray, yy: np.ndarray, gg: np.ndarray, how: str) -> Estimate:
        return auroc_any(dec, yy, gg, how, n_resamples=n_resamples, seed=seed)

    def evaluate(dec: np.ndarray, yy: np.ndarray, gg: np.ndarray, method: str, cond: str, layer: int,
                 bias: float = 0.0) -> np.ndarray:
        """dec: [m] (binary) or [m, K]. Adds auroc/accuracy rows; returns per-example correctness."""
        try:
            scores.append(LayerScore(layer, method, cond, "auroc", auroc_of(dec, yy, gg, ci)))
        except StatsError as e:
            notes.append(f"layer {layer} {method} {cond}: AUROC undefined ({e})")
        pred = (dec + bias > 0).astype(int) if K == 2 else dec.argmax(-1)
        correct = (pred == yy).astype(float)
        scores.append(LayerScore(layer, method, cond, "accuracy", accuracy_estimate(correct, gg)))
        return correct

    pooled_all: dict[str, np.ndarray] = {}
    for li in it:
        L = Ls[li]
        for method in methods:
            if method == "logistic":
                z = out["logit"][li]  # [P, n, k]
                z = z[..., 0] if K == 2 else z
                bias = np.zeros(P)
            else:
                z = out["dir"][li]  # [P, n]
                bias = md_bias[li].cpu().numpy()
            main_dec = z[0, tcols].numpy()
            test_scores.setdefault(method, np.zeros((len(Ls), int(test.sum())) + (main_dec.shape[1:])))
            test_scores[method][li] = main_dec + bias[0]
            c_main = evaluate(main_dec, yte, gte, method, "main", L, bias[0])
            if sh:
                D = z[sh][:, tcols].numpy()
                Db = D + bias[sh].reshape((-1,) + (1,) * (D.ndim - 1))
                pred = (Db > 0).astype(int) if K == 2 else D.argmax(-1)
                c_sh = (pred == yte[None]).mean(0)  # per test example: fraction of shuffled probes correct
                try:
                    if K == 2:
                        scores.append(LayerScore(L, method, "label_shuffle", "auroc", mean_auroc_estimate(
                            D, yte, gte, statistic="auroc")))
                except StatsError as e:
                    notes.append(f"layer {L} {method}: label-shuffle AUROC undefined ({e})")
                scores.append(LayerScore(L, method, "label_shuffle", "accuracy", _paired_difference(
                    c_sh, np.zeros_like(c_sh), gte, statistic="accuracy")))
                scores.append(LayerScore(L, method, "main", "selectivity", _paired_difference(
                    c_main, c_sh, gte, statistic="selectivity")))
            if tfolds:
                pooled = np.zeros((n,) + z.shape[2:])
                for f, (tr, te) in enumerate(tfolds):
                    pooled[te] = z[tf_idx[f], te].numpy() + bias[tf_idx[f]]
                pooled_all.setdefault(method, np.zeros((len(Ls), n) + z.shape[2:]))[li] = pooled
                evaluate(pooled, y, g, method, "held_out_templates", L)
        if R is not None:
            proj = (out["shared"][li] * sign[li][:, None]).numpy()  # [Q, n], oriented on the training split
            try:
                est = mean_auroc_estimate(proj[:, tcols], yte, gte, statistic="auroc")
                est = dataclasses.replace(est, notes=est.notes + (
                    "random unit directions, each oriented on the training split (a baseline: above 0.5 when the "
                    "classes differ along many directions)",))
                scores.append(LayerScore(L, "random", "random_direction", "auroc", est))
            except StatsError as e:
                notes.append(f"layer {L}: random-direction control undefined ({e})")

    # ---- probes of the main problem
    for method in methods:
        probes[method] = {}
        for li, L in enumerate(Ls):
            site = f"{feats.site_kind}.{L}"
            if method == "logistic":
                coef = fit.coef[li, 0].cpu().double().numpy()
                b = fit.intercept[li, 0].cpu().double().numpy()
                if K == 2:
                    coef, b = coef[:, 0], float(b[0])
                probes[method][L] = LinearProbe(coef, b, "logistic", L, site, names, float(C_layer[li]))
            else:
                probes[method][L] = LinearProbe(dirs[li, 0].cpu().double().numpy(), float(md_bias[li, 0]), "mean_diff",
                                                L, site, names)
    settings = {
        "C": C if isinstance(C, str) else float(C), "C_per_layer": C_layer.tolist(), "Cs": list(Cs),
        "test_size": test_size, "seed": seed, "n_train": int(train.sum()), "n_test": int(test.sum()),
        "n_classes": K, "n_problems": P, "n_shuffles": n_shuffles if controls else 0, "problems": [p[0] for p in problems], "device": str(device),
        "streamed": feats.streamed, "n_random_directions": n_random_directions if R is not None else 0,
        "template_folds": len(tfolds), "ci": ci, "headline_ci": headline_ci, "n_resamples": n_resamples,
    }
    if fit is not None:
        settings.update(solver_iterations=fit.n_iter, solver_converged=fit.converged, solver_grad_max=fit.grad_max)
        if not fit.converged:
            pc = fit.problem_converged.cpu().numpy()
            bad = sorted({pnames[p] for _, p in zip(*np.nonzero(~pc))})
            bad_layers = sorted({int(Ls[li]) for li, _ in zip(*np.nonzero(~pc))})
            why = (f"stopped at max_iter={max_iter}" if fit.n_iter >= max_iter else
                   f"stopped after {fit.n_iter} iterations at the float32 resolution of the objective")
            notes.append(f"L-BFGS {why} before tol for {int((~pc).sum())} of {pc.size} "
                         f"(layer, problem) fits (problems {bad[:6]}, layers {bad_layers[:10]}; largest gradient "
                         f"{fit.grad_max:.2g}): separable training rows with weak regularisation converge slowly; "
                         "their predictions are usable"
                         + (", raise max_iter for exact weights" if fit.n_iter >= max_iter else
                            "; a smaller C (stronger regularisation) converges further"))
        settings["solver_unconverged"] = int((~fit.problem_converged).sum()) if fit.problem_converged is not None else 0
    if cv_scores is not None:
        settings["cv_scores"] = cv_scores.tolist()
    prov = provenance or getattr(data, "provenance", None) or Provenance()
    prov = prov.replace(seed=seed, sites=tuple(f"{feats.site_kind}.{L}" for L in Ls),
                        data_hash=prov.data_hash or data_hash(y, [str(x) for x in g]),
                        extra={**prov.extra, "method": "layer_sweep", "methods": list(methods)})
    held = {m: v for m, v in pooled_all.items() if K == 2}
    res = LayerSweepResult(list(Ls), feats.site_kind, scores, probes, names, train, test, test_scores, settings,
                           prov, notes, held, y)
    if headline_ci != ci:  # the headline numbers: the best and the chosen layer's, bootstrapped
        headline_numbers(res, methods, pooled_all, g, headline_ci, n_resamples=n_resamples, seed=seed)
    return res
