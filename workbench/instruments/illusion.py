"""Self-report vs behaviour: The Personality Illusion's analysis, on its released runs and on our conditions.

Han et al. (2025), "The Personality Illusion: Revealing Dissociation Between Self-Reports & Behavior in LLMs"
(arXiv:2509.03730) state three findings. :func:`paper_reanalysis` tests each on the per-run results they
released (``workbench/datasets/personality_illusion/original/data``; 12 instruct and 6 base models, 27 runs
each: 3 default system prompts x 3 temperatures x 3 repeats), with our statistics:

1. **Alignment stabilises self-reports** (RQ1): the spread of a model's self-reported traits across runs is
   smaller after instruction tuning. Per base/instruct pair (6) and trait (Big Five + SRQ self-regulation):
   ``log(SD_instruct / SD_base)``; the mean over traits per pair is tested over the 6 pairs (bootstrap CI,
   exact sign-flip p).
2. **Self-reports do not reliably predict behaviour** (RQ2): across the 12 instruct models (per-model means),
   Spearman's rho of every trait with every behaviour (6 x 5 = 30; bootstrap CIs, permutation p,
   Benjamini-Hochberg across the 30). The two pairings the paper's persona-injection design names
   (agreeableness -> sycophancy, expected +; self-regulation -> risk taking in the Columbia Card Task,
   expected -) are reported on their own.
3. **Persona injection moves self-reports, not behaviour** (RQ3): per injected trait and prompting strategy,
   the per-model shift (injected - baseline) of the targeted self-report and of the paired behaviour, as means
   with bootstrap CIs and sign-flip p over the 12 models, and as standardised effects ``d_z`` (mean shift /
   SD of the shifts); and a :class:`~workbench.crosscheck.CrossCheck` over the 12 models of the self-report
   shift against the behaviour shift (each averaged over the three strategies, so a model counts once;
   signed so that + is the expected direction).

Each finding gets ``reproduced``: True / False / None (the data cannot decide), with the evidence in words.

:func:`condition_table` and :func:`dissociation_crosscheck` do the same analysis for conditions a user runs on
their own model (personas by system prompt and by steering, :mod:`experiments.builtin.personality_illusion`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from workbench.errors import InputError
from workbench.results import Provenance, data_hash
from workbench.stats import Estimate, adjust_pvalues, bootstrap, paired_mean_difference, spearman

__all__ = ["PAPER_TRAITS", "PAPER_BEHAVIOURS", "PAPER_PAIRINGS", "load_paper_results", "Finding",
           "PaperReanalysis", "paper_reanalysis", "plot_paper_injection", "standardised_shift",
           "dissociation_crosscheck"]

#: Self-report columns of the released files (upstream spelling) -> names.
PAPER_TRAITS = {"openeness": "openness", "consciencienes": "conscientiousness", "extraversion": "extraversion",
                "agreeableness": "agreeableness", "neuroticism": "neuroticism", "self_regulation": "self_regulation"}
#: Behaviour columns -> names (Calibaration = overconfidence in %, Consistency = |c1 - c2| in %).
PAPER_BEHAVIOURS = {"CCT_cold_avg": "risk_taking_cct", "IAT_Overall": "iat_bias", "sycophancy_rate": "sycophancy",
                    "Calibaration": "calibration_error", "Consistency": "confidence_inconsistency"}
#: (injected trait folder, self-report column, behaviour column, expected sign of behaviour vs trait)
PAPER_PAIRINGS = (("agreeableness", "agreeableness", "sycophancy_rate", +1),
                  ("self_regulation", "self_regulation", "CCT_cold_avg", -1))
_BASE_TO_INSTRUCT = {"meta-llama/Meta-Llama-3-8B": "meta-llama/Meta-Llama-3-8B-Instruct",
                     "meta-llama/Llama-3.2-3B": "meta-llama/Llama-3.2-3B-Instruct",
                     "Qwen/Qwen2.5-1.5B": "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-7B": "Qwen/Qwen2.5-7B-Instruct",
                     "allenai/OLMo2-7B-1124": "allenai/OLMo-2-1124-7B-Instruct",
                     "mistralai/Mistral-7B-v0.1": "mistralai/Mistral-7B-Instruct-v0.1"}


def load_paper_results() -> dict[str, Any]:
    """The released per-run tables as DataFrames: ``base_selfreport``, ``instruct_selfreport``,
    ``instruct_behaviour``, and ``injection`` = {(trait, strategy): DataFrame}."""
    import pandas as pd

    from workbench import datasets

    def read(rel: str) -> Any:
        return pd.read_csv(datasets.personality_illusion_path(f"data/{rel}"))

    out = {"base_selfreport": read("baseline_responses/base_models_selfreport.csv"),
           "instruct_selfreport": read("baseline_responses/instruct_models_selfreport.csv"),
           "instruct_behaviour": read("baseline_responses/instruct_models_behavioral_tasks.csv"), "injection": {}}
    for trait, _, _, _ in PAPER_PAIRINGS:
        for k in (1, 2, 3):
            out["injection"][(trait, k)] = read(f"persona_injection/{trait}/prompt_strategy_{k}.csv")
    return out


def standardised_shift(shifts: Sequence[float], *, seed: int = 0) -> Estimate:
    """Cohen's d_z of paired shifts (mean / SD), bootstrap CI over units."""
    d = np.asarray(shifts, float)

    def dz(x: np.ndarray) -> float:
        sd = x.std(ddof=1)
        return float(x.mean() / sd) if sd > 0 else float("nan")

    return dataclasses.replace(bootstrap(d, dz, seed=seed, max_degenerate=0.2), statistic="d_z")


@dataclass(frozen=True)
class Finding:
    """One stated finding of the paper and whether our analysis of the released data reproduces it."""

    claim: str
    reproduced: bool | None
    evidence: str


@dataclass
class PaperReanalysis:
    """Results of :func:`paper_reanalysis` (tables are DataFrames)."""

    stabilisation: Any
    stabilisation_estimate: Estimate
    prediction: Any
    injection: Any
    crosschecks: dict[str, Any]
    findings: list[Finding]
    seed: int = 0
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"claim": f.claim, "reproduced": f.reproduced, "evidence": f.evidence}
                             for f in self.findings])

    def summary(self) -> str:
        lines = ["The Personality Illusion (Han et al. 2025), re-analysed on the released runs:"]
        for f in self.findings:
            mark = {True: "REPRODUCED", False: "NOT reproduced", None: "undecided"}[f.reproduced]
            lines.append(f"- {f.claim}: {mark}. {f.evidence}")
        return "\n".join(lines)


def paper_reanalysis(*, seed: int = 0, alpha: float = 0.05, n_permutations: int = 10000) -> PaperReanalysis:
    """Test the paper's three stated findings on its released runs (see the module docstring)."""
    import pandas as pd

    from workbench.crosscheck import CrossCheck

    d = load_paper_results()
    traits = list(PAPER_TRAITS)
    findings: list[Finding] = []

    # ---- 1. stabilisation: SD across runs, base vs instruct
    base, inst = d["base_selfreport"], d["instruct_selfreport"]
    rows = []
    for b, i in _BASE_TO_INSTRUCT.items():
        sb, si = base[base["Model"] == b][traits].std(ddof=1), inst[inst["Model"] == i][traits].std(ddof=1)
        for t in traits:
            r = float(np.log(si[t] / sb[t])) if sb[t] > 0 and si[t] > 0 else np.nan
            rows.append({"base_model": b, "instruct_model": i, "trait": PAPER_TRAITS[t], "sd_base": float(sb[t]),
                         "sd_instruct": float(si[t]), "log_sd_ratio": r})
    stab = pd.DataFrame(rows)
    per_pair = stab.dropna().groupby("base_model")["log_sd_ratio"].mean()
    est1 = paired_mean_difference(per_pair.to_numpy(), seed=seed, n_permutations=n_permutations,
                                  statistic="mean log(SD instruct / SD base)")
    ratio = float(np.exp(est1.value))
    rep1 = True if est1.ci_high < 0 and est1.p_value < alpha else False if est1.ci_low > 0 and est1.p_value < alpha \
        else None
    findings.append(Finding(
        "instruction tuning stabilises self-reported traits (smaller spread across runs)", rep1,
        f"instruct/base SD ratio {ratio:.2f} (geometric mean; {np.exp(est1.ci_low):.2f}-{np.exp(est1.ci_high):.2f}, "
        f"95% bootstrap over {len(per_pair)} model pairs; exact sign-flip p = {est1.p_value:.3g}); "
        f"{int((per_pair < 0).sum())}/{len(per_pair)} pairs shrink; per pair x trait "
        f"{int((stab['log_sd_ratio'] < 0).sum())}/{int(stab['log_sd_ratio'].notna().sum())} shrink"))

    # ---- 2. prediction: model-level Spearman of every trait with every behaviour
    beh = d["instruct_behaviour"]
    mt = inst.groupby("Model")[traits].mean()
    mb = beh.groupby("Model")[list(PAPER_BEHAVIOURS)].mean().loc[mt.index]
    pred = []
    for t in traits:
        for b in PAPER_BEHAVIOURS:
            e = spearman(mt[t].to_numpy(), mb[b].to_numpy(), seed=seed, n_permutations=n_permutations)
            pred.append({"trait": PAPER_TRAITS[t], "behaviour": PAPER_BEHAVIOURS[b], "rho": e.value,
                         "ci_low": e.ci_low, "ci_high": e.ci_high, "p_value": e.p_value, "n_models": e.n})
    pred_df = pd.DataFrame(pred)
    adj = adjust_pvalues(pred_df["p_value"].to_numpy(), "bh", alpha)
    pred_df["p_bh"], pred_df["significant_bh"] = adj.p_adjusted, adj.reject
    focal = []
    for _, t, b, sign in PAPER_PAIRINGS:
        r = pred_df[(pred_df["trait"] == PAPER_TRAITS[t]) & (pred_df["behaviour"] == PAPER_BEHAVIOURS[b])].iloc[0]
        focal.append((PAPER_TRAITS[t], PAPER_BEHAVIOURS[b], sign, r))
    focal_ok = [bool(r["significant_bh"] and np.sign(r["rho"]) == s) for _, _, s, r in focal]
    n_sig = int(pred_df["significant_bh"].sum())
    findings.append(Finding(
        "self-reported traits do not reliably predict behaviour (across models)", not any(focal_ok),
        f"{n_sig}/{len(pred_df)} trait x behaviour Spearman correlations over {len(mt)} instruct models survive "
        f"Benjamini-Hochberg at {alpha}; " + "; ".join(
            f"{t} vs {b} (expected {'+' if s > 0 else '-'}): rho = {r['rho']:.2f} [{r['ci_low']:.2f}, "
            f"{r['ci_high']:.2f}], p_BH = {r['p_bh']:.2g}" for t, b, s, r in focal)))

    # ---- 3. persona injection: self-report vs behaviour shifts per model
    inj_rows, ccs, all_sr_ok, all_beh_null = [], {}, [], []
    base_b = beh.groupby("Model")[list(PAPER_BEHAVIOURS)].mean()
    base_s = inst.groupby("Model")[traits].mean()
    for trait, col, bcol, sign in PAPER_PAIRINGS:
        units: dict[str, list] = {}
        for k in (1, 2, 3):
            dfk = d["injection"][(trait, k)]
            mk = dfk.groupby("Model")[[col, bcol]].mean()
            models = [m for m in mk.index if m in base_s.index and m in base_b.index]
            sr = (mk.loc[models, col] - base_s.loc[models, col]).to_numpy(float)
            bh = (mk.loc[models, bcol] - base_b.loc[models, bcol]).to_numpy(float)
            e_sr = paired_mean_difference(sr, seed=seed, n_permutations=n_permutations, statistic=f"{col} shift")
            e_bh = paired_mean_difference(bh, seed=seed, n_permutations=n_permutations, statistic=f"{bcol} shift")
            dz_sr, dz_bh = standardised_shift(sr, seed=seed), standardised_shift(sign * bh, seed=seed)
            sr_ok = bool(e_sr.ci_low > 0 and e_sr.p_value < alpha)
            beh_moves = bool((e_bh.ci_low > 0 or e_bh.ci_high < 0) and e_bh.p_value < alpha)
            beh_expected = bool(beh_moves and np.sign(e_bh.value) == sign)
            all_sr_ok.append(sr_ok)
            all_beh_null.append(not beh_expected)
            inj_rows.append({"injected": trait, "strategy": k, "n_models": len(models),
                             "self_report": PAPER_TRAITS[col], "self_report_shift": e_sr.value,
                             "self_report_ci": (e_sr.ci_low, e_sr.ci_high), "self_report_p": e_sr.p_value,
                             "self_report_dz": dz_sr.value, "self_report_dz_ci": (dz_sr.ci_low, dz_sr.ci_high),
                             "behaviour": PAPER_BEHAVIOURS[bcol], "expected_sign": sign,
                             "behaviour_shift": e_bh.value, "behaviour_ci": (e_bh.ci_low, e_bh.ci_high),
                             "behaviour_p": e_bh.p_value, "behaviour_dz_expected_direction": dz_bh.value,
                             "behaviour_dz_ci": (dz_bh.ci_low, dz_bh.ci_high),
                             "models_behaviour_in_expected_direction": int((sign * bh > 0).sum())})
            for m, a, b in zip(models, sr, sign * bh):
                units.setdefault(m, []).append((a, b))
        names = sorted(units)
        xs = [float(np.mean([a for a, _ in units[m]])) for m in names]
        ys = [float(np.mean([b for _, b in units[m]])) for m in names]
        ccs[trait] = CrossCheck.from_measurements(
            names, xs, ys, internal_name=f"{PAPER_TRAITS[col]} self-report shift",
            behavioural_name=f"{PAPER_BEHAVIOURS[bcol]} shift (expected direction +)", unit_name="model",
            seed=seed, provenance=Provenance(data_hash=data_hash(names, xs, ys), seed=seed,
                                             extra={"source": "Personality Illusion released runs", "injected": trait}))
    inj = pd.DataFrame(inj_rows)
    rep3 = bool(all(all_sr_ok) and all(all_beh_null))
    findings.append(Finding(
        "persona injection moves self-reports in the intended direction but not behaviour", rep3,
        "; ".join(f"{r.injected} strategy {r.strategy}: self-report {r.self_report_shift:+.2f} (d_z "
                  f"{r.self_report_dz:.1f}, p={r.self_report_p:.2g}), {r.behaviour} {r.behaviour_shift:+.2f} "
                  f"(p={r.behaviour_p:.2g}, {r.models_behaviour_in_expected_direction}/{r.n_models} models in the "
                  "expected direction)" for r in inj.itertuples()) +
        "; cross-check of the shifts over models (strategies averaged): " + "; ".join(
            f"{t}: {cc.verdict} (rho {cc.correlation.value:.2f})" if cc.correlation else f"{t}: {cc.verdict}"
            for t, cc in ccs.items())))
    prov = Provenance(data_hash=data_hash(*(d[k].to_csv(index=False) for k in ("base_selfreport", "instruct_selfreport",
                                                                              "instruct_behaviour"))),
                      seed=seed, extra={"source": "psychology-of-AI/Personality-Illusion@a934083 (MIT)"})
    return PaperReanalysis(stab, est1, pred_df, inj, ccs, findings, seed, prov)


def plot_paper_injection(result: PaperReanalysis, ax: Any = None) -> Any:
    """Standardised shifts (d_z, CI) of the targeted self-report and of the paired behaviour per strategy."""
    from workbench.plots import figure_and_ax

    inj = result.injection
    fig, ax = figure_and_ax(ax, (6.0, 3.6))
    x = np.arange(len(inj))
    for off, col, ci, lab, colour in ((-0.15, "self_report_dz", "self_report_dz_ci", "self-report", "#4c72b0"),
                                      (0.15, "behaviour_dz_expected_direction", "behaviour_dz_ci",
                                       "behaviour (expected direction +)", "#dd8452")):
        v = inj[col].to_numpy(float)
        lo = np.array([c[0] for c in inj[ci]])
        hi = np.array([c[1] for c in inj[ci]])
        ax.errorbar(x + off, v, yerr=[v - lo, hi - v], fmt="o", capsize=3, color=colour, label=lab)
    ax.axhline(0, color="0.5", ls="--", lw=1)
    ax.set_xticks(x, [f"{r.injected}\nstrategy {r.strategy}" for r in inj.itertuples()], fontsize=7)
    ax.set_ylabel("standardised shift d_z (12 models)")
    ax.set_title("Persona injection in the released runs: self-report vs behaviour", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def dissociation_crosscheck(table: Any, *, self_report: str = "self_report_shift", behaviour: str = "behaviour_shift",
                            unit: str = "condition", seed: int = 0, provenance: Provenance | None = None,
                            min_units: int | None = None) -> Any:
    """CrossCheck of self-report shifts against behaviour shifts over conditions (rows of ``table``), both signed
    so that + is the direction the injected persona predicts. ``agree`` means self-report tracks behaviour;
    anything else, with self-report shifts that are themselves clear, is the dissociation."""
    from workbench.crosscheck import DEFAULT_MIN_UNITS, CrossCheck

    if not len(table):
        raise InputError("dissociation_crosscheck needs at least one condition")
    return CrossCheck.from_measurements(list(table[unit]), table[self_report].to_numpy(float),
                                        table[behaviour].to_numpy(float), internal_name="self-report shift",
                                        behavioural_name="behaviour shift", unit_name=unit, seed=seed,
                                        provenance=provenance,
                                        min_units=DEFAULT_MIN_UNITS if min_units is None else min_units)

