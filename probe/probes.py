"""Linear probes on one layer: logistic regression (scikit-learn) and the mean-difference direction.

- :func:`fit_logistic`: ``StandardScaler`` + ``LogisticRegression`` with ``class_weight="balanced"``;
  ``C="cv"`` chooses C by cross-validation over groups (``LogisticRegressionCV`` with group folds,
  so no template or pair leaks between the folds). Linear probes after Alain & Bengio (2016).
- :func:`fit_mean_diff`: the difference of class means (positive minus negative; for evaluation
  awareness: test minus deploy, Nguyen et al. 2025), thresholded at the midpoint.

Both return a :class:`LinearProbe` whose weights live in raw activation space (standardisation
folded in), so a probe scores new activations with one dot product and its direction can be
exported for steering (:func:`probe.directions.to_direction_set`). For sweeps over many layers
use :func:`probe.sweep.layer_sweep` (batched; same optimum as :func:`fit_logistic`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["LinearProbe", "fit_logistic", "fit_mean_diff", "DEFAULT_CS"]

#: C grid for cross-validated logistic probes (standardised features).
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class LinearProbe:
    """A linear probe on raw activations: ``decision(x) = x @ coef + intercept``.

    ``coef`` is ``[d]`` for two classes (decision > 0 predicts class 1) or ``[d, K]``.
    """

    coef: np.ndarray
    intercept: Any
    method: str
    layer: int | None = None
    site: str | None = None
    label_names: tuple[str, ...] = ("negative", "positive")
    C: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return int(self.coef.shape[0])

    @property
    def n_classes(self) -> int:
        return 2 if self.coef.ndim == 1 else int(self.coef.shape[1])

    def _check(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None]
        if X.shape[-1] != self.d:
            raise ValueError(f"activations have width {X.shape[-1]} but this probe ({self.method}, "
                             f"{self.site or 'layer ' + str(self.layer)}) expects width {self.d}: wrong layer or model?")
        return X

    def decision(self, X: Any) -> np.ndarray:
        """``[n]`` logits (binary; positive favours class 1) or ``[n, K]``."""
        return self._check(X) @ self.coef + self.intercept

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[n]`` P(class 1) for two classes (logistic of the decision), ``[n, K]`` softmax otherwise.
        For a mean-difference probe this is a monotone squashing of the projection, not calibrated."""
        z = self.decision(X)
        if z.ndim == 1:
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        z = self.decision(X)
        return (z > 0).astype(int) if z.ndim == 1 else z.argmax(1)

    @property
    def direction(self) -> np.ndarray:
        """Unit vector in activation space: the probe's weight vector (binary), or the highest
        minus the lowest class's weights (ordered classes, e.g. verbosity low/mid/high)."""
        v = self.coef if self.coef.ndim == 1 else self.coef[:, -1] - self.coef[:, 0]
        n = np.linalg.norm(v)
        return v / n if n > 0 else v


def _xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    from .splits import _check_labels

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"activations must be [n, d]; got shape {X.shape}")
    y = _check_labels(y)
    if len(y) != len(X):
        raise ValueError(f"{len(y)} labels for {len(X)} activation rows")
    return X, y


def fit_logistic(X: Any, y: Any, *, C: float | str = "cv", Cs: Sequence[float] = DEFAULT_CS,
                 groups: Sequence[Any] | None = None, cv: int = 5, seed: int = 0, max_iter: int = 2000,
                 layer: int | None = None, site: str | None = None,
                 label_names: tuple[str, ...] | None = None) -> LinearProbe:
    """L2 logistic regression probe (balanced classes) on ``X [n, d]``.

    ``C="cv"``: choose C from ``Cs`` by ``cv``-fold cross-validation over ``groups`` (ROC AUC for
    two classes, accuracy otherwise); a float: use it.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler

    from .splits import group_kfold

    X, y = _xy(X, y)
    classes = np.unique(y)
    yi = np.searchsorted(classes, y)
    sc = StandardScaler().fit(X)
    Z = sc.transform(X)
    if C == "cv":
        folds = [(np.flatnonzero(tr), np.flatnonzero(te)) for tr, te in group_kfold(yi, groups, cv, seed=seed)]
        import warnings

        with warnings.catch_warnings():  # scikit-learn >= 1.8 announces changes to C_'s shape (we ravel it)
            warnings.filterwarnings("ignore", message=".*use_legacy_attributes.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*l1_ratios.*", category=FutureWarning)  # L2 only here
            model = LogisticRegressionCV(Cs=list(Cs), cv=folds, class_weight="balanced", max_iter=max_iter,
                                         scoring="roc_auc" if classes.size == 2 else "accuracy").fit(Z, yi)
        chosen = float(np.ravel(model.C_)[0])
    else:
        model = LogisticRegression(C=float(C), class_weight="balanced", max_iter=max_iter).fit(Z, yi)
        chosen = float(C)
    coef = model.coef_.T / sc.scale_[:, None]  # [d, K or 1]
    intercept = model.intercept_ - sc.mean_ @ coef
    if classes.size == 2:
        coef, intercept = coef[:, 0], float(intercept[0])
    names = label_names or tuple(str(c) for c in classes)
    return LinearProbe(coef, intercept, "logistic", layer, site, names, chosen)


def fit_mean_diff(X: Any, y: Any, *, layer: int | None = None, site: str | None = None,
                  label_names: tuple[str, ...] | None = None) -> LinearProbe:
    """Mean-difference probe: direction = mean(class 1) - mean(class 0) (Nguyen et al. 2025: test
    minus deploy), decision = x . direction - midpoint threshold. Binary labels only."""
    X, y = _xy(X, y)
    classes = np.unique(y)
    if classes.size != 2:
        raise ValueError(f"the mean-difference probe needs exactly two classes; got {classes.size} ({classes[:5]})")
    m1 = X[y == classes[1]].mean(0)
    m0 = X[y == classes[0]].mean(0)
    w = m1 - m0
    return LinearProbe(w, float(-w @ (m1 + m0) / 2.0), "mean_diff", layer, site,
                       label_names or tuple(str(c) for c in classes))
