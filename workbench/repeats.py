"""Run-to-run randomness: an eval repeated over samples, seeds and temperatures, and what it says.

"On Randomness in Agentic Evals" (the project's reference for this module) argues that one sampled
run of an eval misleads: its pass@1 moves from run to run by more than many reported differences.
This module runs any behavioural scorer many times and reports

- **pass@k and pass^k curves** with bootstrap CIs over items: pass@k is the unbiased estimator of
  Chen et al. (2021), ``1 - C(N - c, k) / C(N, k)`` per item with ``N`` samples and ``c`` passes,
  averaged over items; pass^k = ``C(c, k) / C(N, k)`` (Yao et al. 2024, tau-bench), the chance that
  ``k`` samples all pass (:func:`workbench.stats.pass_at_k`, :func:`workbench.stats.pass_hat_k`);
- **the spread of single-run pass@1**: a *run* is one sample of every item (one (seed, sample id)
  pair); its pass@1 is the mean outcome over items. Reported: the runs' SD, min and max, the SD
  predicted from the items' pass rates, and the *noise floor*, the 95th percentile of the absolute
  difference between two runs of the same configuration (smaller differences between two single
  runs are indistinguishable from noise);
- **variance components** (:func:`variance_components`): a one-way random-effects split of the
  outcomes into between-item and within-item (run-to-run) variance, with CIs by bootstrap over
  items;
- **power** (:func:`runs_needed`): the runs per configuration needed to detect a difference in
  pass@1, analytic, with a simulation check (:func:`simulate_power`);
- **first divergence** (:func:`first_divergence`): the first generated position at which samples of
  the same item differ.

Sampling is batch-invariant (:meth:`workbench.models.HookedModel.generate` draws every row from its
own generator seeded by (seed, prompt tokens, sample id)), so a run's samples do not depend on how
the items were batched, and any run can be recomputed alone.

References: Chen, M. et al. (2021), Evaluating Large Language Models Trained on Code (eq. 1);
Yao, S. et al. (2024), tau-bench (pass^k); Searle, Casella & McCulloch (1992), Variance Components,
ch. 3 (one-way ANOVA estimators, balanced case); Fleiss, Levin & Paik (2003) eq. 4.14 (sample size).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from itertools import combinations
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from workbench.errors import WorkbenchError
from workbench.results import Provenance, data_hash, to_jsonable
from workbench.stats import (
    Estimate,
    StatsError,
    bootstrap,
    pass_at_k_over_tasks,
    pass_hat_k_over_tasks,
    proportion,
    two_proportion_sample_size,
)

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["RepeatedRuns", "repeated_runs", "VarianceComponents", "variance_components", "RunSpread", "run_spread",
           "PowerAnalysis", "runs_needed", "simulate_power", "first_divergence", "pairwise_divergence",
           "answer_probability", "next_token_entropy", "plot_repeated_runs", "RepeatsError"]

_NORMAL = NormalDist()


class RepeatsError(WorkbenchError, ValueError):
    """Repeated runs that cannot be made or analysed as asked (the message says what to change)."""


def _matrix(y: Any, what: str = "outcomes") -> np.ndarray:
    a = np.asarray(y, dtype=float)
    if a.ndim != 2:
        raise RepeatsError(f"{what} must be a 2-D array [items, runs]; got shape {a.shape}")
    if not np.all((a == 0) | (a == 1)):
        raise RepeatsError(f"{what} must be 0/1 pass outcomes")
    return a


# ------------------------------------------------------------------------------------------ variance components
@dataclass(frozen=True)
class VarianceComponents:
    """One-way random-effects split of 0/1 outcomes ``y[item, run]`` (balanced: every item has R runs).

    With item means ``m_i``, grand mean ``m``, I items and R runs:
    ``MSB = R * sum_i (m_i - m)^2 / (I - 1)`` and ``MSW = sum_ir (y_ir - m_i)^2 / (I (R - 1))``;
    ``run = MSW`` (within-item, run-to-run variance; for 0/1 outcomes its expectation is the mean of
    ``p_i (1 - p_i)``), ``item = max(0, (MSB - MSW) / R)`` (variance of the items' true pass rates),
    ``run_share = run / (item + run)`` (1 - the intraclass correlation). ``single_run_sd`` =
    ``sqrt(MSW / I)``: the standard deviation of one run's pass@1 that these components predict.
    Each is an :class:`~workbench.stats.Estimate` with a bootstrap CI over items.
    """

    item: Estimate
    run: Estimate
    run_share: Estimate
    single_run_sd: Estimate
    n_items: int
    n_runs: int
    msb: float
    msw: float

    def to_dict(self) -> dict:
        return to_jsonable(self)


def _components(y: np.ndarray) -> tuple[float, float, float, float]:
    I, R = y.shape
    m_i = y.mean(1)
    msb = R * float(((m_i - m_i.mean()) ** 2).sum()) / (I - 1)
    msw = float(((y - m_i[:, None]) ** 2).sum()) / (I * (R - 1))
    return msb, msw, max(0.0, (msb - msw) / R), msw


def variance_components(y: Any, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
                        ) -> VarianceComponents:
    """Between-item and run-to-run variance of ``y[item, run]`` (0/1), CIs by bootstrap over items."""
    y = _matrix(y)
    I, R = y.shape
    if I < 2 or R < 2:
        raise RepeatsError(f"variance components need at least 2 items and 2 runs; got {I} items x {R} runs")
    msb, msw, item, run = _components(y)
    kw = dict(confidence=confidence, n_resamples=n_resamples, seed=seed, vectorized=False, max_degenerate=0.1)

    def est(fn, name):
        try:
            e = bootstrap(y, fn, **kw)
        except StatsError as err:  # e.g. every item always passes: the share is 0/0 on every resample
            raise RepeatsError(f"{name}: {err}") from err
        return Estimate(e.value, e.ci_low, e.ci_high, confidence=e.confidence, stderr=e.stderr, n=e.n,
                        method="bootstrap percentile over items", seed=e.seed, statistic=name, notes=e.notes)

    def share(m):
        _, _, it, ru = _components(m)
        return ru / (it + ru) if it + ru > 0 else float("nan")

    out = dict(item=est(lambda m: _components(m)[2], "item_variance"),
               run=est(lambda m: _components(m)[3], "run_variance"),
               single_run_sd=est(lambda m: math.sqrt(_components(m)[3] / m.shape[0]), "single_run_sd"))
    if item + run == 0:
        raise RepeatsError("every item has the same outcome in every run: there is no variance to split")
    out["run_share"] = est(share, "run_share")
    return VarianceComponents(n_items=I, n_runs=R, msb=msb, msw=msw, **out)


# ------------------------------------------------------------------------------------------ single-run spread
@dataclass(frozen=True)
class RunSpread:
    """How far single runs stray: each run's pass@1 (mean over items) against the pooled pass@1.

    Attributes:
        per_run: pass@1 of every run.
        pooled: pass@1 over all runs, with a bootstrap CI over items.
        sd, minimum, maximum: of the single-run values.
        predicted_sd: ``sqrt(sum_i p_i (1 - p_i)) / I`` from the pooled item rates (runs independent
            given the items; an observed ``sd`` well above it points to shared run-level effects).
        noise_floor: 95th percentile of ``|pass@1_r - pass@1_r'|`` over pairs of runs: two single runs
            of one configuration differ by more than this only 5% of the time.
        wilson_miss: share of runs whose own Wilson interval (items as trials) excludes the pooled value.
    """

    per_run: np.ndarray
    pooled: Estimate
    sd: float
    minimum: float
    maximum: float
    predicted_sd: float
    noise_floor: float
    wilson_miss: float

    def to_dict(self) -> dict:
        return to_jsonable(self)


def run_spread(y: Any, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> RunSpread:
    """Spread of single-run pass@1 for outcomes ``y[item, run]``."""
    y = _matrix(y)
    I, R = y.shape
    if R < 2:
        raise RepeatsError(f"the spread of single runs needs at least 2 runs; got {R}")
    per_run = y.mean(0)
    p_i = y.mean(1)
    pooled = bootstrap(p_i, np.mean, confidence=confidence, n_resamples=n_resamples, seed=seed)
    pooled = Estimate(pooled.value, pooled.ci_low, pooled.ci_high, confidence=confidence, stderr=pooled.stderr,
                      n=I, method="bootstrap percentile over items", seed=seed, statistic="pass@1")
    diffs = np.abs(per_run[:, None] - per_run[None, :])[np.triu_indices(R, 1)]
    miss = [proportion(int(y[:, r].sum()), I, confidence=confidence).excludes(pooled.value) for r in range(R)]
    return RunSpread(per_run=per_run, pooled=pooled, sd=float(per_run.std(ddof=1)), minimum=float(per_run.min()),
                     maximum=float(per_run.max()), predicted_sd=float(math.sqrt((p_i * (1 - p_i)).sum()) / I),
                     noise_floor=float(np.quantile(diffs, 0.95)), wilson_miss=float(np.mean(miss)))


# ------------------------------------------------------------------------------------------ power
@dataclass(frozen=True)
class PowerAnalysis:
    """Runs per configuration needed to detect a difference ``delta`` in pass@1.

    Design: configurations A and B are each run ``runs`` times over the same items; the test is a
    two-sample z-test on the runs' pass@1 values. A run's pass@1 has variance
    ``sigma^2 = sum_i p_i (1 - p_i) / I^2`` (items fixed, runs independent); assuming B's runs have the
    same variance, ``runs = ceil(2 (z_{1-alpha/2} + z_power)^2 sigma^2 / delta^2)`` (two-sided).
    ``runs_if_exchangeable`` ignores that items differ (every outcome a Bernoulli(p) draw):
    :func:`workbench.stats.two_proportion_sample_size` for ``p -> p + delta`` divided by I. It is larger,
    because heterogeneous items vary less from run to run than a common rate would.
    ``simulated_power`` is the rejection rate of the same test (with estimated variances) in
    ``n_simulations`` simulated experiments at ``runs`` runs (B = A's outcome draws + delta on each
    run's pass@1); it checks the normal approximation (close to ``power`` when runs are not tiny).
    """

    delta: float
    alpha: float
    power: float
    runs: int
    runs_if_exchangeable: int | None
    single_run_sd: float
    simulated_power: Estimate | None
    n_items: int
    seed: int

    def to_dict(self) -> dict:
        return to_jsonable(self)


def _z_test_power_runs(sd: float, delta: float, alpha: float, power: float) -> int:
    za, zb = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    return max(2, int(math.ceil(2 * (za + zb) ** 2 * sd ** 2 / delta ** 2 - 1e-9)))


def simulate_power(p_items: Sequence[float], delta: float, runs: int, *, alpha: float = 0.05,
                   n_simulations: int = 2000, seed: int = 0) -> Estimate:
    """Rejection rate of the two-sample z-test on run-level pass@1 (Wilson CI over simulations).

    Each simulated experiment draws ``runs`` runs of A (every item ``Bernoulli(p_i)``, pass@1 = mean)
    and ``runs`` runs of B (the same draws' distribution, pass@1 shifted by ``delta``), and rejects when
    ``|mean_B - mean_A| / sqrt(s_A^2 / runs + s_B^2 / runs) > z_{1 - alpha/2}``."""
    p = np.asarray(p_items, dtype=float)
    if runs < 2:
        raise RepeatsError(f"a simulated experiment needs at least 2 runs per configuration; got {runs}")
    rng = np.random.default_rng(seed)
    za = _NORMAL.inv_cdf(1 - alpha / 2)
    hits = 0
    for _ in range(n_simulations):
        a = (rng.random((runs, p.size)) < p).mean(1)
        b = (rng.random((runs, p.size)) < p).mean(1) + delta
        se = math.sqrt(a.var(ddof=1) / runs + b.var(ddof=1) / runs)
        diff = b.mean() - a.mean()
        hits += bool(se > 0 and abs(diff) / se > za) or bool(se == 0 and diff != 0)
    e = proportion(hits, n_simulations)
    return Estimate(e.value, e.ci_low, e.ci_high, n=n_simulations, method="wilson over simulations", seed=seed,
                    statistic="simulated_power")


def runs_needed(p_items: Sequence[float], delta: float, *, alpha: float = 0.05, power: float = 0.8,
                n_simulations: int = 2000, seed: int = 0) -> PowerAnalysis:
    """Runs per configuration to detect a change ``delta`` in pass@1, given per-item pass rates ``p_items``
    (e.g. the pooled rates of a pilot); see :class:`PowerAnalysis`. ``n_simulations=0`` skips the check."""
    p = np.asarray(p_items, dtype=float)
    if p.ndim != 1 or p.size < 1 or np.any((p < 0) | (p > 1)):
        raise RepeatsError("p_items must be a 1-D array of pass rates in [0, 1]")
    if not 0 < abs(delta) < 1:
        raise RepeatsError(f"delta must be a non-zero difference in pass@1 within (-1, 1); got {delta}")
    I = p.size
    sd = float(math.sqrt((p * (1 - p)).sum()) / I)
    if sd == 0:
        raise RepeatsError("every item passes always or never: runs do not vary, so any difference is seen in one run")
    runs = _z_test_power_runs(sd, delta, alpha, power)
    pbar = float(p.mean())
    exch = None
    if 0 < pbar < 1 and 0 < pbar + delta < 1:
        exch = int(math.ceil(two_proportion_sample_size(pbar, pbar + delta, alpha=alpha, power=power) / I))
    sim = simulate_power(p, delta, runs, alpha=alpha, n_simulations=n_simulations, seed=seed) if n_simulations else None
    return PowerAnalysis(delta=float(delta), alpha=alpha, power=power, runs=runs, runs_if_exchangeable=exch,
                         single_run_sd=sd, simulated_power=sim, n_items=I, seed=seed)


# ------------------------------------------------------------------------------------------ divergence
def first_divergence(samples: Sequence[Sequence[int]]) -> int | None:
    """The first generated position at which the samples (token id lists) are not all equal, or None
    when all are identical. A sample that has ended (EOS or length) differs from one that goes on."""
    seqs = [list(s) for s in samples]
    if len(seqs) < 2:
        raise RepeatsError("first divergence needs at least 2 samples of the item")
    for t in range(max(len(s) for s in seqs)):
        if len({s[t] if t < len(s) else None for s in seqs}) > 1:
            return t
    return None


def pairwise_divergence(samples: Sequence[Sequence[int]], max_new_tokens: int) -> float:
    """Mean over pairs of samples of their first differing position; identical pairs count as
    ``max_new_tokens`` (they did not diverge within the generated window: a censored value)."""
    seqs = [list(s) for s in samples]
    vals = []
    for a, b in combinations(seqs, 2):
        d = first_divergence([a, b])
        vals.append(max_new_tokens if d is None else d)
    return float(np.mean(vals))


# ------------------------------------------------------------------------------------------ the result
@dataclass(frozen=True, eq=False)
class RepeatedRuns:
    """Outcomes of an eval repeated over temperatures, seeds and samples.

    Attributes:
        items: the prompts (one per item).
        temperatures: sampling temperatures (0 = greedy: every run is the same).
        seeds, n_samples: each seed draws ``n_samples`` samples per item; run ``r`` is
            (``seeds[r // n_samples]``, sample id ``r % n_samples``), so there are
            ``len(seeds) * n_samples`` runs.
        outcomes: ``[n_temperatures, n_items, n_runs]`` 0/1 (score >= ``pass_threshold``).
        scores: the scorer's raw values, same shape (NaN where the scorer could not score).
        completions, completion_ids: ``[n_temperatures][n_items][n_runs]`` text and token ids.
        scorer: the scorer's name; ``n_unscored``: NaN scores (counted as failures).
        settings: generation settings; provenance: model, weights hash, data hash, seed.
    """

    items: tuple[str, ...]
    temperatures: tuple[float, ...]
    seeds: tuple[int, ...]
    n_samples: int
    outcomes: np.ndarray
    scores: np.ndarray
    completions: tuple
    completion_ids: tuple
    scorer: str
    n_unscored: int
    settings: dict
    provenance: Provenance = field(default_factory=Provenance)
    confidence: float = 0.95
    seed: int = 0

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_runs(self) -> int:
        return len(self.seeds) * self.n_samples

    def run_label(self, r: int) -> tuple[int, int]:
        """(seed, sample id) of run ``r``."""
        return self.seeds[r // self.n_samples], r % self.n_samples

    def _t(self, temperature: float | None) -> int:
        if temperature is None:
            if len(self.temperatures) != 1:
                raise RepeatsError(f"several temperatures were run {self.temperatures}; say which (temperature=)")
            return 0
        for i, t in enumerate(self.temperatures):
            if math.isclose(t, temperature):
                return i
        raise RepeatsError(f"temperature {temperature} was not run; run temperatures: {self.temperatures}")

    def y(self, temperature: float | None = None) -> np.ndarray:
        """``[n_items, n_runs]`` outcomes at one temperature."""
        return self.outcomes[self._t(temperature)]

    def counts(self, temperature: float | None = None) -> np.ndarray:
        """Passes per item (out of ``n_runs``)."""
        return self.y(temperature).sum(1).astype(int)

    def pass_at_k(self, k: int, temperature: float | None = None) -> Estimate:
        """Mean unbiased pass@k over items with a bootstrap CI over items."""
        return pass_at_k_over_tasks(self.n_runs, self.counts(temperature).tolist(), k, confidence=self.confidence,
                                    seed=self.seed)

    def pass_hat_k(self, k: int, temperature: float | None = None) -> Estimate:
        """Mean pass^k over items with a bootstrap CI over items."""
        return pass_hat_k_over_tasks(self.n_runs, self.counts(temperature).tolist(), k, confidence=self.confidence,
                                     seed=self.seed)

    def default_ks(self) -> list[int]:
        ks = sorted({1, self.n_runs} | {2 ** j for j in range(1, 12) if 2 ** j < self.n_runs})
        return ks

    def curves(self, ks: Sequence[int] | None = None) -> Any:
        """pass@k and pass^k for every temperature and k (default 1, 2, 4, ..., n_runs), with CIs."""
        import pandas as pd

        rows = []
        for t in self.temperatures:
            for k in ks or self.default_ks():
                for name, fn in (("pass@k", self.pass_at_k), ("pass^k", self.pass_hat_k)):
                    e = fn(k, t)
                    rows.append({"temperature": t, "k": k, "metric": name, "value": e.value, "ci_low": e.ci_low,
                                 "ci_high": e.ci_high, "n_items": e.n})
        return pd.DataFrame(rows)

    def spread(self, temperature: float | None = None) -> RunSpread:
        return run_spread(self.y(temperature), confidence=self.confidence, seed=self.seed)

    def variance_components(self, temperature: float | None = None) -> VarianceComponents:
        return variance_components(self.y(temperature), confidence=self.confidence, seed=self.seed)

    def runs_needed(self, delta: float, temperature: float | None = None, *, alpha: float = 0.05,
                    power: float = 0.8, n_simulations: int = 2000) -> PowerAnalysis:
        """Runs per configuration to detect ``delta`` in pass@1, from this eval's item pass rates."""
        p = self.counts(temperature) / self.n_runs
        return runs_needed(p, delta, alpha=alpha, power=power, n_simulations=n_simulations, seed=self.seed)

    def divergence(self, temperature: float | None = None) -> Any:
        """Per item: the first position where its samples differ (None: never within the window), the
        mean pairwise first difference (censored at max_new_tokens), the common prefix and the distinct
        tokens there."""
        import pandas as pd

        ti = self._t(temperature)
        T = int(self.settings.get("max_new_tokens", 0))
        rows = []
        for i, p in enumerate(self.items):
            ids = self.completion_ids[ti][i]
            d = first_divergence(ids)
            nxt = sorted({tuple(s[d:d + 1]) for s in ids}) if d is not None else []
            rows.append({"item": p, "temperature": self.temperatures[ti], "first_divergence": d,
                         "diverged": d is not None, "pairwise_divergence": pairwise_divergence(ids, T),
                         "common_prefix_ids": list(ids[0][:d]) if d is not None else list(ids[0]),
                         "n_distinct_next": len(nxt), "n_distinct_completions": len({tuple(s) for s in ids})})
        return pd.DataFrame(rows)

    def to_dataframe(self) -> Any:
        """One row per (temperature, item, run): seed, sample id, score, outcome, completion."""
        import pandas as pd

        rows = []
        for ti, t in enumerate(self.temperatures):
            for i, p in enumerate(self.items):
                for r in range(self.n_runs):
                    s, j = self.run_label(r)
                    rows.append({"temperature": t, "item_index": i, "item": p, "run": r, "seed": s, "sample_id": j,
                                 "score": self.scores[ti, i, r], "outcome": int(self.outcomes[ti, i, r]),
                                 "completion": self.completions[ti][i][r]})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        lines = [f"{self.scorer} over {self.n_items} items x {self.n_runs} runs ({len(self.seeds)} seeds x "
                 f"{self.n_samples} samples), temperatures {list(self.temperatures)}"]
        for t in self.temperatures:
            y = self.y(t)
            p1 = self.pass_at_k(1, t)
            line = f"  T={t:g}: pass@1 {p1.format(3)}"
            if self.n_runs > 1:
                pk = self.pass_at_k(self.n_runs, t)
                ph = self.pass_hat_k(self.n_runs, t)
                sp = run_spread(y, confidence=self.confidence, seed=self.seed)
                line += (f"; pass@{self.n_runs} {pk.value:.3f} [{pk.ci_low:.3f}, {pk.ci_high:.3f}]; pass^{self.n_runs} "
                         f"{ph.value:.3f} [{ph.ci_low:.3f}, {ph.ci_high:.3f}]; single runs {sp.minimum:.3f}..{sp.maximum:.3f} "
                         f"(sd {sp.sd:.3f}, predicted {sp.predicted_sd:.3f}; noise floor {sp.noise_floor:.3f})")
            lines.append(line)
        if self.n_unscored:
            lines.append(f"  {self.n_unscored} unscored outputs counted as failures")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Everything, JSON-able (NaN scores become None); :meth:`from_dict` rebuilds the result."""
        return to_jsonable({"items": self.items, "temperatures": self.temperatures, "seeds": self.seeds,
                            "n_samples": self.n_samples, "outcomes": self.outcomes, "scores": self.scores,
                            "completions": self.completions, "completion_ids": self.completion_ids,
                            "scorer": self.scorer, "n_unscored": self.n_unscored, "settings": self.settings,
                            "provenance": self.provenance, "confidence": self.confidence, "seed": self.seed})

    @classmethod
    def concat(cls, parts: Sequence["RepeatedRuns"]) -> "RepeatedRuns":
        """The runs of several parts (each with its own seeds, the same items, temperatures, samples per seed,
        scorer and settings) as one result, seeds in the parts' order: equal to one :func:`repeated_runs` call over
        all the seeds, since every sample is drawn from its own generator (seed, prompt, sample id). This is how a
        grid of one task per seed is merged."""
        parts = list(parts)
        if not parts:
            raise RepeatsError("concat needs at least one part")
        a = parts[0]
        same = ("items", "temperatures", "n_samples", "scorer", "confidence", "seed")
        for p in parts[1:]:
            bad = [k for k in same if getattr(p, k) != getattr(a, k)]
            other = {k: v for k, v in p.settings.items() if k != "seeds"}
            if other != {k: v for k, v in a.settings.items() if k != "seeds"}:
                bad.append("settings")
            if bad:
                raise RepeatsError(f"cannot concatenate runs that differ in {', '.join(bad)}; run every seed of one "
                                   "configuration with the same items, temperatures, samples, scorer and settings")
        seeds = tuple(s for p in parts for s in p.seeds)
        if len(set(seeds)) != len(seeds):
            raise RepeatsError(f"the parts share seeds ({list(seeds)}); each seed must come from one part")
        settings = {**a.settings, "seeds": list(seeds)}
        extra = dict(a.provenance.extra or {})
        if "settings" in extra:
            extra["settings"] = settings
        prov = dataclasses.replace(a.provenance, extra=extra)

        def cat(xs: list) -> tuple:  # [temperature][item][run], runs joined in the parts' order
            return tuple(tuple(tuple(r for x in xs for r in x[ti][i]) for i in range(len(a.items)))
                         for ti in range(len(a.temperatures)))
        return cls(a.items, a.temperatures, seeds, a.n_samples, np.concatenate([p.outcomes for p in parts], axis=2),
                   np.concatenate([p.scores for p in parts], axis=2), cat([p.completions for p in parts]),
                   cat([p.completion_ids for p in parts]), a.scorer, sum(p.n_unscored for p in parts), settings,
                   prov, a.confidence, a.seed)

    @classmethod
    def from_dict(cls, d: dict) -> "RepeatedRuns":
        scores = np.array([[[np.nan if v is None else v for v in r] for r in t] for t in d["scores"]], dtype=float)
        prov = d.get("provenance") or {}
        prov = Provenance(**{**prov, "sites": tuple(prov.get("sites", ()))})
        return cls(tuple(d["items"]), tuple(float(t) for t in d["temperatures"]), tuple(int(s) for s in d["seeds"]),
                   int(d["n_samples"]), np.asarray(d["outcomes"], dtype=float), scores,
                   tuple(tuple(tuple(r) for r in t) for t in d["completions"]),
                   tuple(tuple(tuple(tuple(x) for x in r) for r in t) for t in d["completion_ids"]),
                   d["scorer"], int(d["n_unscored"]), dict(d["settings"]), prov, float(d["confidence"]), int(d["seed"]))


# ------------------------------------------------------------------------------------------ the driver
def repeated_runs(model: Model, prompts: Sequence[str], scorer: Any, *, n_samples: int = 4,
                  seeds: Sequence[int] = (0, 1), temperatures: Sequence[float] = (1.0,), max_new_tokens: int = 16,
                  top_k: int | None = None, top_p: float | None = None, pass_threshold: float = 0.5,
                  batch_size: int = 32, confidence: float = 0.95, seed: int = 0, progress: bool = False,
                  **generate_kw: Any) -> RepeatedRuns:
    """Run an eval ``len(seeds) * n_samples`` times per temperature and score every output.

    Args:
        model: a :class:`workbench.models.HookedModel`.
        prompts: the items (distinct strings; chat formatting through ``chat=True`` in ``generate_kw``).
        scorer: any behavioural scorer, ``scorer(prompts, outputs) -> ScoreResult``
            (:mod:`workbench.scorers`: answer-match, refusal, a judge...). An output passes when its
            value is ``>= pass_threshold``; NaN values (unscorable) count as failures and are counted.
        n_samples, seeds: samples per item per seed (sample ids ``0..n_samples-1``) and the seeds.
        temperatures: sampling temperatures; 0 means greedy decoding (one generation, the same in every run).
        max_new_tokens, top_k, top_p, batch_size, **generate_kw: passed to ``model.generate``.
        confidence, seed: for the intervals (bootstrap seed).
    """
    items = list(prompts)
    if not items or not all(isinstance(p, str) for p in items):
        raise RepeatsError("prompts must be a non-empty list of strings (one per item)")
    if len(set(items)) != len(items):
        raise RepeatsError("prompts must be distinct: an item is identified by its prompt (repeat through n_samples)")
    if n_samples < 1 or not seeds:
        raise RepeatsError(f"need n_samples >= 1 and at least one seed; got n_samples={n_samples}, seeds={list(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise RepeatsError(f"seeds must be distinct; got {list(seeds)}")
    for t in temperatures:
        if t < 0:
            raise RepeatsError(f"temperatures must be >= 0 (0 = greedy); got {t}")
    I, R = len(items), len(seeds) * n_samples
    outcomes = np.zeros((len(temperatures), I, R))
    scores = np.zeros((len(temperatures), I, R))
    comps = [[[""] * R for _ in items] for _ in temperatures]
    cids = [[[()] * R for _ in items] for _ in temperatures]
    n_unscored, name = 0, getattr(scorer, "name", type(scorer).__name__)
    jobs = [(ti, si) for ti in range(len(temperatures)) for si in range(len(seeds))]
    it: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(jobs, desc=f"repeated runs ({model.name})", unit="seed")
    greedy_cache: dict[int, Any] = {}
    for ti, si in it:
        T = float(temperatures[ti])
        rep = [p for p in items for _ in range(n_samples)]
        if T == 0:
            if ti not in greedy_cache:
                greedy_cache[ti] = model.generate(items, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                                  **generate_kw)
            g0 = greedy_cache[ti]
            texts = [g0.completions[i] for i in range(I) for _ in range(n_samples)]
            ids = [g0.completion_ids[i] for i in range(I) for _ in range(n_samples)]
        else:
            g = model.generate(rep, max_new_tokens=max_new_tokens, do_sample=True, temperature=T, top_k=top_k,
                               top_p=top_p, seed=int(seeds[si]), batch_size=batch_size,
                               sample_ids=[j for _ in items for j in range(n_samples)], **generate_kw)
            texts, ids = g.completions, g.completion_ids
        res = scorer(rep, texts)
        v = np.asarray(res.values, dtype=float)
        n_unscored += int(np.isnan(v).sum())
        for k in range(len(rep)):
            i, j = divmod(k, n_samples)
            r = si * n_samples + j
            scores[ti, i, r] = v[k]
            outcomes[ti, i, r] = float(v[k] >= pass_threshold) if not math.isnan(v[k]) else 0.0
            comps[ti][i][r] = texts[k]
            cids[ti][i][r] = tuple(ids[k])
    settings = dict(n_samples=n_samples, seeds=list(seeds), temperatures=list(temperatures),
                    max_new_tokens=max_new_tokens, top_k=top_k, top_p=top_p, pass_threshold=pass_threshold,
                    backend=model.backend_name, sampling="per-row generators: sha256(seed|prompt ids|sample id)",
                    **{k: v for k, v in generate_kw.items() if isinstance(v, (str, int, float, bool, type(None)))})
    prov = model.provenance(data_hash=data_hash(items), seed=seed,
                            extra={"method": "repeated_runs", "scorer": name, "settings": settings})
    return RepeatedRuns(tuple(items), tuple(float(t) for t in temperatures), tuple(int(s) for s in seeds), n_samples,
                        outcomes, scores, tuple(tuple(tuple(r) for r in t) for t in comps),
                        tuple(tuple(tuple(r) for r in t) for t in cids), name, n_unscored, settings, prov,
                        confidence, seed)


# ------------------------------------------------------------------------------------------ internal measures
def answer_probability(model: Model, prompts: Sequence[str], answers: Sequence[str], *, temperature: float = 1.0,
                       batch_size: int = 16, **tokenize_kw: Any) -> np.ndarray:
    """Teacher-forced probability of each answer's tokens after its prompt under the sampling
    distribution at ``temperature`` (``prod_t softmax(logits_t / T)[answer_t]``): the chance that a
    sampled completion starts with exactly that answer. ``temperature=1`` equals
    ``exp(continuation_logprobs(...).total)``."""
    import torch

    if temperature <= 0:
        raise RepeatsError("answer_probability needs temperature > 0")
    if len(prompts) != len(answers):
        raise RepeatsError(f"{len(prompts)} prompts but {len(answers)} answers")
    out = np.zeros(len(prompts))
    for a in range(0, len(prompts), batch_size):
        idx = list(range(a, min(len(prompts), a + batch_size)))
        pt = model.tokenize([prompts[i] for i in idx], **tokenize_kw)
        rows, spans = [], []
        for j, i in enumerate(idx):
            p = pt.real_tokens(j)
            c = model.tokenizer(answers[i], add_special_tokens=False)["input_ids"]
            if not c:
                raise RepeatsError(f"answer {answers[i]!r} tokenises to nothing")
            rows.append(p + c)
            spans.append((len(p), len(c)))
        toks = model._pad(rows, "right", None, {})
        with torch.inference_mode():
            logits = model.forward(toks).float()
        lp = torch.log_softmax(logits / temperature, -1)
        for j, (n_p, n_c) in enumerate(spans):
            ids = torch.tensor(rows[j][n_p:n_p + n_c], device=lp.device)
            out[idx[j]] = float(lp[j, n_p - 1:n_p - 1 + n_c].gather(-1, ids[:, None]).sum().exp())
    return out


def next_token_entropy(model: Model, prompts: Sequence[str], *, temperature: float = 1.0, batch_size: int = 16,
                       **tokenize_kw: Any) -> np.ndarray:
    """Entropy (nats) of the next-token distribution after each prompt at ``temperature``."""
    import torch

    if temperature <= 0:
        raise RepeatsError("next_token_entropy needs temperature > 0")
    out = np.zeros(len(prompts))
    for a in range(0, len(prompts), batch_size):
        idx = list(range(a, min(len(prompts), a + batch_size)))
        with torch.inference_mode():
            logits = model.forward([prompts[i] for i in idx], logits="last", **tokenize_kw).float()
        lp = torch.log_softmax(logits / temperature, -1)
        out[idx] = (-(lp.exp() * lp).sum(-1)).cpu().numpy()
    return out


# ------------------------------------------------------------------------------------------ plot
def plot_repeated_runs(result: RepeatedRuns) -> Any:
    """Three panels: pass@k and pass^k against k per temperature (CI bands); single-run pass@1 per run
    against the pooled CI; the items' pass rates (sorted) per temperature."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    df = result.curves()
    colours = ["C0", "C1", "C2", "C3", "C4", "C5"]
    for n, t in enumerate(result.temperatures):
        c = colours[n % len(colours)]
        for metric, ls in (("pass@k", "-"), ("pass^k", "--")):
            d = df[(df.temperature == t) & (df.metric == metric)]
            ax1.plot(d.k, d.value, ls, color=c, marker="o", ms=3, label=f"{metric} T={t:g}")
            ax1.fill_between(d.k, d.ci_low, d.ci_high, color=c, alpha=0.12)
        if result.n_runs > 1:
            sp = result.spread(t)
            ax2.plot(np.arange(result.n_runs), sp.per_run, "o", color=c, ms=4, label=f"T={t:g}")
            ax2.axhspan(sp.pooled.ci_low, sp.pooled.ci_high, color=c, alpha=0.12)
            ax2.axhline(sp.pooled.value, color=c, lw=0.8)
        rates = np.sort(result.counts(t) / result.n_runs)[::-1]
        ax3.plot(np.arange(result.n_items), rates, "-o", color=c, ms=3, label=f"T={t:g}")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("k")
    ax1.set_ylabel("rate (95% CI over items)")
    ax1.set_title("pass@k (solid) and pass^k (dashed)", fontsize=10)
    ax1.legend(fontsize=7)
    ax2.set_xlabel("run (seed x sample id)")
    ax2.set_ylabel("single-run pass@1")
    ax2.set_title("single runs vs pooled pass@1 (band: CI)", fontsize=10)
    ax3.set_xlabel("item (sorted)")
    ax3.set_ylabel("pass rate over runs")
    ax3.set_title("per-item pass rates", fontsize=10)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.25)
    ax2.legend(fontsize=7)
    return fig
