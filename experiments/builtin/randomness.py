"""``randomness``: how much one sampled run of an eval can be trusted (On Randomness in Agentic Evals).

The eval: short factual completions (``studies.FACTS``: "The capital of France is" -> "Paris"),
sampled at several temperatures, ``len(seeds) * n_samples`` runs each, scored by the shared
``answer-match`` scorer (the completion's first word is the answer). Temperature 0 is greedy
decoding, the same in every run: the baseline a single deterministic run reports.

Sections (one resumable step each; the driver's raw outcomes are stored by the first):

1. ``runs``: pass@k and pass^k curves with bootstrap CIs over items, per temperature;
2. ``spread``: single-run pass@1 (a run = one sample of every item) against the pooled value: SD,
   range, the SD predicted from the items' rates, the noise floor (95th percentile of the difference
   between two runs of the same configuration), and the one-way variance split into items and runs;
3. ``power``: the runs per configuration needed to detect a difference in pass@1 of each ``deltas``,
   analytic and by simulation, against the count an exchangeable-items formula gives;
4. ``divergence``: the first generated token at which an item's samples differ;
5. cross-checks: the model's teacher-forced probability of the answer at the sampling temperature
   (internal, one forward pass) against the item's pass rate over runs (behaviour), expected +;
   the next-token entropy at the sampling temperature against the mean pairwise divergence
   position of the samples, expected -.

The seeds loop is a grid on the run's executor (``--executor ray`` spreads it): a task per (model, seed) draws that
seed's samples of every item at every temperature (:func:`seed_task`), each a resumable shard, merged per model by
:meth:`workbench.repeats.RepeatedRuns.concat` (equal to one call over every seed: each sample has its own
generator). Several models (``--model A --model B``) give every step per model (``<step>@<model>``) and
``compare-randomness``: each model's pass@1, single-run SD, noise floor, runs needed and cross-checks side by side.

``PRESETS["quick"]`` (for ``--preset quick``) keeps 24 items, 2 seeds x 4 samples and one sampled
temperature next to greedy; about 1-2 minutes on 2 CPU cores with the default model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext, Section

PRESETS = {"quick": {"n_samples": 4, "seeds": [0, 1], "temperatures": [0.0, 1.0], "max_new_tokens": 4,
                     "deltas": [0.05, 0.1], "n_simulations": 500, "batch_size": 96}}


@dataclass
class RandomnessConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0                       # bootstrap / simulation seed
    n_items: int = 0                    # 0: every prompt of studies.FACTS (24)
    n_samples: int = 8                  # samples per item per seed
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    temperatures: list[float] = field(default_factory=lambda: [0.0, 0.7, 1.0, 1.3])  # 0 = greedy
    max_new_tokens: int = 6
    match_mode: Literal["first_word", "prefix", "contains"] = "first_word"
    chat: bool = False                  # raw completion prompts by default (FACTS are sentence stems)
    deltas: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1])
    alpha: float = 0.05
    power: float = 0.8
    n_simulations: int = 2000
    batch_size: int = 64


def _facts(cfg: RandomnessConfig) -> list[tuple[str, str]]:
    from circuits import FACTS

    return list(FACTS[: cfg.n_items] if cfg.n_items else FACTS)


@experiment("randomness", RandomnessConfig,
            "run-to-run randomness of a sampled eval: pass@k / pass^k with CIs, single-run spread, variance "
            "split, runs needed (power), first divergence; logits vs sampled behaviour")
def run(ctx: RunContext, cfg: RandomnessConfig) -> None:
    from dataclasses import asdict

    from ..comparison import compare_headlines

    if not any(t > 0 for t in cfg.temperatures):
        raise ValueError("randomness needs at least one temperature > 0 (0 is greedy: every run is the same)")
    if len(set(cfg.seeds)) != len(cfg.seeds) or not cfg.seeds:
        raise ValueError(f"seeds must be distinct and at least one; got {cfg.seeds}")
    # the seeds loop as a grid on the executor: a task per (model, seed), each a shard, merged per model
    sec = cfg.model
    params = {k: v for k, v in asdict(cfg).items() if k != "model"}
    names = ctx.model_names()
    tasks = [{"model": n, "backend": sec.backend, "device": sec.device, "dtype": sec.dtype, "run_seed": s,
              "config": params} for n in names for s in cfg.seeds]
    parts = ctx.grid("randomness-seeds", seed_task, tasks)
    by_model = {n: [p for t, p in zip(tasks, parts) if t["model"] == n] for n in names}
    heads = ctx.per_model(lambda n: _run_one(ctx, cfg, by_model[n]))
    compare_headlines(
        ctx, "compare-randomness", "run-to-run randomness per model",
        "Per model, at the reference temperature: pooled pass@1 (bootstrap CI over items), the single-run SD and "
        "noise floor (two runs of one configuration differ by less than this 95% of the time), the run share of "
        "the variance, the runs needed to detect the smallest difference configured, and the cross-checks "
        "(Spearman, 95% CI): p(answer) from the logits vs the pass rate over runs (expected +), next-token "
        "entropy vs where samples diverge (expected -).",
        heads, seed=cfg.seed)


def _scorer(cfg: RandomnessConfig) -> Any:
    from workbench.scorers import AnswerMatchScorer

    facts = _facts(cfg)
    return AnswerMatchScorer({p: a.strip() for p, a in facts}, mode=cfg.match_mode, seed=cfg.seed)


def seed_task(task: dict) -> dict:
    """One seed of the eval on one model (a grid task): every item ``n_samples`` times at every temperature
    (:func:`workbench.repeats.repeated_runs` with this seed alone; ``RepeatedRuns.concat`` of the seeds equals one
    call over all of them). JSON in (the model, ``run_seed``, the experiment's ``config`` without its model), the
    result's ``to_dict()`` out."""
    import torch

    from workbench.repeats import repeated_runs

    from ..config import config_from_dict
    from ..tasks import task_model

    cfg = config_from_dict(RandomnessConfig, task["config"])
    torch.manual_seed(int(task["run_seed"]))
    m = task_model(task)
    prompts = [p for p, _ in _facts(cfg)]
    res = repeated_runs(m, prompts, _scorer(cfg), n_samples=cfg.n_samples, seeds=[int(task["run_seed"])],
                        temperatures=cfg.temperatures, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                        seed=cfg.seed, chat=cfg.chat, stop_at_eos=True)
    return res.to_dict()


def _run_one(ctx: RunContext, cfg: RandomnessConfig, parts: list[dict]) -> dict:
    """The steps on the model in scope from its seeds' runs; returns its headline numbers."""
    import numpy as np

    from workbench.repeats import RepeatedRuns

    from ..comparison import crosscheck_estimate

    m = ctx.model()
    facts = _facts(cfg)
    prompts, answers = [p for p, _ in facts], [a.strip() for _, a in facts]
    raw_answers = [a for _, a in facts]  # with the leading space the model writes after a raw prompt
    sampled = [t for t in cfg.temperatures if t > 0]
    ref_t = min(sampled, key=lambda t: abs(t - 1.0))  # the temperature the headline numbers use

    def runs_step(w):

        from workbench.plots import plot_estimates
        from workbench.repeats import plot_repeated_runs

        ctx.record_data("randomness_items", facts)
        res = RepeatedRuns.concat([RepeatedRuns.from_dict(p) for p in parts])
        curves = res.curves()
        p1 = {f"pass@1 T={t:g}": res.pass_at_k(1, t).to_dict() for t in res.temperatures}
        pk = {f"pass@{res.n_runs} T={t:g}": res.pass_at_k(res.n_runs, t).to_dict() for t in sampled}
        ph = {f"pass^{res.n_runs} T={t:g}": res.pass_hat_k(res.n_runs, t).to_dict() for t in sampled}
        names = [f"T={t:g}" for t in res.temperatures]
        fig2 = plot_estimates(names, [res.pass_at_k(1, t) for t in res.temperatures], title="pass@1 by temperature")
        w.section(Section(
            "Repeated runs: pass@k and pass^k",
            f"{res.n_items} factual completion prompts, {res.n_runs} runs per temperature ({len(cfg.seeds)} seeds x "
            f"{cfg.n_samples} samples; a run is one sample of every item), scored by the shared answer-match scorer "
            f"({cfg.match_mode}). pass@k (Chen et al. 2021, unbiased) rises with k; pass^k (all k samples pass) falls: "
            "the gap is the run-to-run randomness. T=0 is greedy decoding (every run identical). CIs: bootstrap over "
            "items.",
            metrics={**p1, **pk, **ph, "unscored outputs": res.n_unscored},
            figures=[w.figure("pass_curves", plot_repeated_runs(res)), w.figure("pass1", fig2)],
            tables=[w.table("pass_curves", curves), w.table("runs", res.to_dataframe())],
            notes=[f"sampling: {res.settings['sampling']}; max_new_tokens={cfg.max_new_tokens}; chat={cfg.chat}"]))
        return res.to_dict()
    payload = ctx.step("runs", runs_step)
    res = RepeatedRuns.from_dict(payload)

    def spread_step(w):
        import pandas as pd

        rows, comp_rows, metrics, notes = [], [], {}, []
        for t in sampled:
            sp = res.spread(t)
            for r, v in enumerate(sp.per_run):
                s, j = res.run_label(r)
                rows.append({"temperature": t, "run": r, "seed": s, "sample_id": j, "pass@1": v})
            try:
                vc = res.variance_components(t)
            except ValueError as e:
                notes.append(f"T={t:g}: variance components not computed: {e}")
                vc = None
            comp_rows.append({"temperature": t, "pooled_pass@1": sp.pooled.value, "pooled_ci_low": sp.pooled.ci_low,
                              "pooled_ci_high": sp.pooled.ci_high, "single_run_sd": sp.sd,
                              "predicted_sd": sp.predicted_sd, "min": sp.minimum, "max": sp.maximum,
                              "noise_floor": sp.noise_floor, "wilson_miss": sp.wilson_miss,
                              **({f"{k}": getattr(vc, k).value for k in ("item", "run", "run_share")} if vc else {}),
                              **({f"{k}_ci": [getattr(vc, k).ci_low, getattr(vc, k).ci_high]
                                  for k in ("item", "run", "run_share")} if vc else {})})
            metrics[f"T={t:g} single-run pass@1 range"] = f"{sp.minimum:.3f} .. {sp.maximum:.3f} (pooled {sp.pooled.format(3)})"
            metrics[f"T={t:g} single-run SD (predicted)"] = f"{sp.sd:.3f} ({sp.predicted_sd:.3f})"
            metrics[f"T={t:g} noise floor"] = round(sp.noise_floor, 4)
            if vc:
                metrics[f"T={t:g} run share of variance"] = vc.run_share.to_dict()
        df = pd.DataFrame(comp_rows)
        fig = _spread_figure(rows)
        w.section(Section(
            "Single runs mislead: spread and variance components",
            "Each point of the figure is one run's pass@1. The noise floor is the 95th percentile of the absolute "
            "difference between two runs of the same configuration: a difference between two single runs smaller "
            "than it says nothing. The predicted SD assumes runs independent given the items (sqrt(sum p_i(1-p_i))/I); "
            "an observed SD far above it would point to shared run-level effects. Variance components: one-way "
            "random effects, between items vs within items (run to run), CIs by bootstrap over items.",
            metrics=metrics, figures=[w.figure("single_runs", fig)],
            tables=[w.table("spread", df), w.table("single_runs", pd.DataFrame(rows))], notes=notes))
        return {"noise_floor": {str(t): r["noise_floor"] for t, r in zip(sampled, comp_rows)}}
    spread = ctx.step("spread", spread_step)

    def power_step(w):
        import pandas as pd

        rows, notes = [], []
        for t in sampled:
            for d in cfg.deltas:
                try:
                    pa = res.runs_needed(d, t, alpha=cfg.alpha, power=cfg.power, n_simulations=cfg.n_simulations)
                except ValueError as e:
                    notes.append(f"T={t:g}, delta={d}: {e}")
                    continue
                sim = pa.simulated_power
                rows.append({"temperature": t, "delta": d, "runs_needed": pa.runs,
                             "runs_if_items_exchangeable": pa.runs_if_exchangeable, "single_run_sd": pa.single_run_sd,
                             "simulated_power": sim.value if sim else None,
                             "simulated_ci_low": sim.ci_low if sim else None,
                             "simulated_ci_high": sim.ci_high if sim else None})
        df = pd.DataFrame(rows)
        metrics = {f"runs for delta={r['delta']:g} at T={r['temperature']:g}":
                   f"{r['runs_needed']} (simulated power {r['simulated_power']:.2f})" for r in rows
                   if r["temperature"] == ref_t and r["simulated_power"] is not None}
        w.section(Section(
            "How many runs? Power for a difference in pass@1",
            f"Runs per configuration for a two-sided z-test on run-level pass@1 to detect each difference at "
            f"alpha={cfg.alpha}, power={cfg.power}, given these items' pass rates (the items fixed, runs independent). "
            "Checked by simulating the experiment; 'if items exchangeable' is the textbook two-proportion count "
            "divided by the number of items, which ignores that items differ.",
            metrics=metrics, tables=[w.table("power", df)], notes=notes))
        return {"rows": rows}
    power = ctx.step("power", power_step)

    def divergence_step(w):
        import pandas as pd

        frames = []
        for t in sampled:
            d = res.divergence(t)
            d["common_prefix"] = [m.tokenizer.decode(ids) for ids in d.common_prefix_ids]
            frames.append(d.drop(columns=["common_prefix_ids"]))
        df = pd.concat(frames, ignore_index=True)
        metrics = {}
        for t in sampled:
            d = df[df.temperature == t]
            fd = d.first_divergence.dropna()
            metrics[f"T={t:g} items whose samples diverge"] = f"{int(d.diverged.sum())}/{len(d)}"
            if len(fd):
                metrics[f"T={t:g} median first divergence (token)"] = float(np.median(fd))
            metrics[f"T={t:g} mean pairwise divergence (token)"] = round(float(d.pairwise_divergence.mean()), 3)
        w.section(Section(
            "Where sampled generations first diverge",
            "For each item, the first generated position at which its samples are not all equal (0 = the first "
            f"token), and the mean over pairs of samples of their first differing position (identical pairs count "
            f"as {cfg.max_new_tokens}, the window).",
            metrics=metrics, tables=[w.table("divergence", df)]))
        return {}
    ctx.step("divergence", divergence_step)

    def crosscheck_step(w):
        import pandas as pd

        from workbench.crosscheck import CrossCheck
        from workbench.repeats import answer_probability, next_token_entropy

        kw = {"chat": cfg.chat}
        p_ans = answer_probability(m, prompts, raw_answers, temperature=ref_t, **kw)
        rate = res.counts(ref_t) / res.n_runs
        prov = m.provenance(seed=cfg.seed, extra={"study": "randomness", "temperature": ref_t})
        cc1 = CrossCheck.from_measurements(prompts, p_ans, rate, internal_name="p_T(answer) from logits",
                                           behavioural_name="pass rate over runs", unit_name="prompt",
                                           seed=cfg.seed, provenance=prov)
        out = {"logits_vs_sampling": w.crosscheck("answer_prob", cc1, "Cross-check: logits predict sampled behaviour",
            f"Internal: the teacher-forced probability, at T={ref_t:g}, that a sample starts with the answer (one "
            f"forward pass, no sampling). Behaviour: the item's pass rate over {res.n_runs} sampled runs (shared "
            "answer-match scorer). A sampler and scorer that behave as the logits say give a strong positive "
            "correlation; the pass rate can exceed p(answer) where other openings (\" the city of Paris\") do not "
            "count, or fall below it where the answer token starts a longer word.",
            tables=[w.table("answer_prob", pd.DataFrame({"prompt": prompts, "answer": answers,
                                                         "p_answer": p_ans, "pass_rate": rate}))])}
        ent = next_token_entropy(m, prompts, temperature=ref_t, **kw)
        div = res.divergence(ref_t).pairwise_divergence.to_numpy()
        cc2 = CrossCheck.from_measurements(prompts, ent, div, internal_name="next-token entropy (nats)",
                                           behavioural_name="mean pairwise divergence position", unit_name="prompt",
                                           expected_sign=-1, seed=cfg.seed, provenance=prov)
        out["entropy_vs_divergence"] = w.crosscheck("entropy", cc2, "Cross-check: next-token entropy vs where samples diverge",
            f"Internal: entropy of the next-token distribution after the prompt at T={ref_t:g}. Behaviour: the mean "
            "first position at which two samples of the item differ. Expected negative: the more uncertain the "
            "first token, the earlier samples part ways.")
        return out
    ctx.step("crosschecks", crosscheck_step)
    step = ctx.step_name("crosschecks")
    sp = res.spread(ref_t)
    need = [r for r in power["rows"] if r["temperature"] == ref_t]
    d_min = min((r["delta"] for r in need), default=None)
    return {"temperature": ref_t, "pass@1": res.pass_at_k(1, ref_t), "single-run SD": sp.sd,
            "noise floor": spread["noise_floor"].get(str(ref_t)),
            **({f"runs for delta={d_min:g}": next(r["runs_needed"] for r in need if r["delta"] == d_min)}
               if d_min is not None else {}),
            "logits vs sampling": crosscheck_estimate(ctx, step, "answer_prob"),
            "entropy vs divergence": crosscheck_estimate(ctx, step, "entropy")}


def _spread_figure(rows: list[dict]):
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    temps = sorted({r["temperature"] for r in rows})
    for n, t in enumerate(temps):
        v = np.array([r["pass@1"] for r in rows if r["temperature"] == t])
        x = n + (np.random.default_rng(0).random(v.size) - 0.5) * 0.3
        ax.plot(x, v, "o", ms=4, alpha=0.7, color=f"C{n}")
        ax.hlines(v.mean(), n - 0.25, n + 0.25, color="k", lw=1)
    ax.set_xticks(range(len(temps)), [f"T={t:g}" for t in temps])
    ax.set_ylabel("single-run pass@1")
    ax.set_title("one point per run; bar = mean over runs", fontsize=10)
    ax.grid(alpha=0.25)
    return fig
