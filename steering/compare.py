"""Prompt vs steering: the same persona imposed two ways, scored by the same scorers
("Persona Non Grata"; persona vectors from Chen et al. 2025).

For each persona there are three conditions, each scored by every scorer on the same items:

- ``baseline``: the model as deployed (its default system prompt, no steering);
- ``prompt``: the persona's system prompt (``persona.high[prompt_index]``) replaces the default;
- ``steer``: the default system prompt, with the persona vector added at ``layer`` on
  ``positions`` at **matched strength**.

Matched strength (the comparison is only fair at equal strength): every persona vector is scaled
so that its mean next-token KL from the unsteered model on neutral prompts equals a target
(:func:`steering.calibration.match_strength`). The default target is the median over personas
of the KL that the personas' system prompts cause on the same prompts, so steering is, on
average, as strong as prompting; the per-persona prompt KLs are reported next to it.

Reported: per (persona, method, scorer) the scorer's aggregate (rate or mean with its CI) and
the paired shift from baseline (bootstrap over items); per scorer, Spearman's rho across
personas between the prompt shifts and the steering shifts, with a bootstrap CI and a
permutation p-value (:func:`workbench.stats.spearman`): do the two methods rank the personas
alike?

Scorers (:class:`StatementsScorer`, :class:`ReplyContrastScorer`, :class:`HarmfulScorer`,
:class:`TraitJudgeScorer`) share
one interface: ``score(model, persona, condition) -> ScoreResult``; write your own the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from workbench.results import Provenance, data_hash
from workbench.stats import mean_estimate, paired_difference

from .calibration import StrengthMatch, match_strength, prompt_kls
from .operators import check_positions
from .personas import Persona, PersonaVectors, load_personas
from .scoring import model_generate_fn, steered_ab_scores
from .vector import SteeringVector

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["Condition", "StatementsScorer", "ReplyContrastScorer", "HarmfulScorer", "TraitJudgeScorer",
           "PersonaComparison", "persona_comparison", "persona_effects", "SteeringSweep", "steering_sweep", "METHODS"]

METHODS = ("baseline", "prompt", "steer")


@dataclass(frozen=True)
class Condition:
    """How a persona is imposed: a system prompt (None = the model's default) and operators."""

    method: str
    system: str | None = None
    operators: tuple = ()

    @property
    def key(self) -> tuple:
        return (self.system, tuple(id(o) for o in self.operators))


class StatementsScorer:
    """Yes/No persona statements (Perez et al. 2022) for the persona's ``statements`` file, scored by the
    shared A/B scorer (:func:`workbench.scorers.ab.ab_scores`, answers stripped: "Yes"/"No" right after
    the assistant turn opens): per-item p(matching), mean with a bootstrap CI. ``n`` statements,
    balanced between Yes- and No-matching. The persona's ``statements`` is a shipped trait or the path of a
    user's ``.json``/``.jsonl`` statement file. Returns :class:`workbench.scorers.StatementScores`: the same
    p(matching) plus the model's baseline p(Yes) and the score corrected for its Yes/No bias
    (:func:`workbench.scorers.yes_no_bias`)."""

    name = "statements"

    def __init__(self, n: int = 40, *, seed: int = 0, batch_size: int = 16, records: Sequence[Mapping] | None = None):
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self._records: dict[str, list] = {}
        self._given = list(records) if records is not None else None

    def records(self, persona: Persona) -> list:
        """The statements scored: ``records=`` when given (e.g. held out from a model's training), else ``n``
        balanced statements from the persona's file."""
        from .data import load_persona_statements

        if self._given is not None:
            return self._given
        if persona.statements is None:
            raise ValueError(f"persona {persona.name!r} names no statements file")
        if persona.name not in self._records:
            self._records[persona.name] = load_persona_statements(persona.statements, n=self.n, seed=self.seed)
        return self._records[persona.name]

    def score(self, model: Model, persona: Persona, condition: Condition) -> Any:
        from workbench.scorers import yes_no_bias

        recs = self.records(persona)
        res = steered_ab_scores(model, recs, condition.operators, system=condition.system,
                                batch_size=self.batch_size, seed=self.seed)
        return yes_no_bias(res, recs, seed=self.seed)


class ReplyContrastScorer:
    """Teacher-forced trait expression in replies: per ``(question, trait reply, opposite reply)`` triple, the mean
    per-token log-prob of the trait-expressing reply minus that of the opposite one, each as the assistant's answer
    to the question (the shared log-prob scorer, :func:`workbench.scorers.continuation_logprobs`, under the
    condition's system prompt and operators). Mean with a bootstrap CI clustered by question."""

    name = "replies"

    def __init__(self, triples: Sequence[tuple[str, str, str]], *, seed: int = 0, batch_size: int = 16):
        if len(triples) < 2:
            raise ValueError("ReplyContrastScorer needs at least 2 (question, reply, opposite reply) triples")
        self.triples, self.seed, self.batch_size = list(triples), seed, batch_size

    def score(self, model: Model, persona: Persona, condition: Condition) -> Any:
        from workbench.scorers import ScoreResult, continuation_logprobs
        from workbench.stats import bootstrap

        from .operators import interventions_for

        qs = [q for q, _, _ in self.triples]
        kw: dict = {"chat": True, "batch_size": self.batch_size,
                    "interventions": interventions_for(model, *condition.operators)}
        if condition.system is not None:
            kw["system"] = condition.system
        hi = continuation_logprobs(model, qs, [a for _, a, _ in self.triples], **kw).mean_per_token
        lo = continuation_logprobs(model, qs, [b for _, _, b in self.triples], **kw).mean_per_token
        vals = np.asarray(hi - lo, float)
        agg = bootstrap(vals, seed=self.seed, groups=qs if len(set(qs)) < len(qs) else None)
        prov = model.provenance(data_hash=data_hash(self.triples), seed=self.seed,
                                extra={"scorer": "reply log-prob contrast", "system": condition.system})
        return ScoreResult(self.name, vals, tuple(qs), agg, groups=tuple(qs), provenance=prov)


class _GenerationScorer:
    """Shared machinery: generate under a condition (cached per condition), then score."""

    name = "generation"

    def __init__(self, prompts: Sequence[str], *, max_new_tokens: int = 48, batch_size: int = 32, seed: int = 0):
        self.prompts = list(prompts)
        self.max_new_tokens, self.batch_size, self.seed = max_new_tokens, batch_size, seed
        self._gen: dict[tuple, list[str]] = {}
        self.generations: dict[tuple, list[str]] = {}

    def completions(self, model: Model, persona: Persona, condition: Condition) -> list[str]:
        key = condition.key
        if key not in self._gen:
            from .operators import steer

            with steer(model, *condition.operators):
                gen = model.generate(self.prompts, max_new_tokens=self.max_new_tokens, chat=True,
                                     system=condition.system, batch_size=self.batch_size, seed=self.seed)
            self._gen[key] = gen.completions
        self.generations[(persona.name, condition.method)] = self._gen[key]
        return self._gen[key]


class HarmfulScorer(_GenerationScorer):
    """Generations to harmful requests, scored by a shared scorer: refusal rate
    (``RefusalScorer``, the default) or attack success rate (``ASRScorer``)."""

    def __init__(self, prompts: Sequence[str], scorer: Callable[..., Any] | None = None, **kw: Any):
        super().__init__(prompts, **kw)
        from workbench.scorers import RefusalScorer

        self.scorer = scorer if scorer is not None else RefusalScorer()
        self.name = getattr(self.scorer, "name", "harmful")

    def score(self, model: Model, persona: Persona, condition: Condition) -> Any:
        return self.scorer(self.prompts, self.completions(model, persona, condition))


class TraitJudgeScorer(_GenerationScorer):
    """Answers to open questions, rated 0-100 for the persona's trait by a judge (Chen et al. 2025's
    protocol, through :class:`workbench.scorers.TraitScorer`). The judge runs unsteered (after the
    steering block closes).

    ``mode="logit"`` (default): :func:`steering.scoring.logit_trait_judge` (100 * p(Yes) to "does the
    reply show the trait?"), which any model can answer; ``mode="generate"``: the shared 0-100 text
    template (:func:`workbench.scorers.make_trait_judge`), for judge models able to write a score.
    ``judge_model`` defaults to the model itself; a 135M model is a weak judge: say so when reporting.
    """

    name = "trait"

    def __init__(self, prompts: Sequence[str] | None = None, *, judge_model: Any = None, mode: str = "logit",
                 judge_tokens: int = 5, **kw: Any):
        from .data import persona_questions

        if mode not in ("logit", "generate"):
            raise ValueError(f"mode must be 'logit' or 'generate', got {mode!r}")
        super().__init__(prompts if prompts is not None else persona_questions(), **kw)
        self.judge_model, self.mode, self.judge_tokens = judge_model, mode, judge_tokens

    def judge(self, model: Model, persona: Persona) -> Any:
        from workbench.scorers import make_trait_judge

        jm = self.judge_model or model
        if self.mode == "logit":
            from .scoring import logit_trait_judge

            return logit_trait_judge(jm, persona.trait, persona.description)
        return make_trait_judge(model_generate_fn(jm, max_new_tokens=self.judge_tokens), persona.trait,
                                persona.description)

    def score(self, model: Model, persona: Persona, condition: Condition) -> Any:
        from workbench.scorers import TraitScorer

        outs = self.completions(model, persona, condition)
        return TraitScorer(self.judge(model, persona), trait=persona.trait, seed=self.seed)(self.prompts, outs)


@dataclass
class PersonaComparison:
    """Results of :func:`persona_comparison`.

    Attributes:
        scores: ``{(persona, method, scorer): ScoreResult}``.
        shifts: ``{(persona, method, scorer): Estimate}`` of method minus baseline (paired).
        correlations: ``{scorer: Estimate}`` Spearman rho across personas, prompt shift vs steer shift.
        operators: ``{persona: Add}`` the matched steering operators used by the ``steer`` method.
        strength: the matched-strength setting: target KL, how it was chosen, per persona the
            prompt KL (Estimate), the steering norm, multiplier, fraction of the residual norm and
            the achieved KL (Estimate).
    """

    personas: list[str]
    scorers: list[str]
    layer: int
    positions: Any
    scores: dict[tuple, Any]
    shifts: dict[tuple, Any]
    correlations: dict[str, Any]
    strength: dict
    notes: list[str] = field(default_factory=list)
    operators: dict = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for (p, m, s), res in sorted(self.scores.items()):
            e = res.aggregate
            sh = self.shifts.get((p, m, s))
            rows.append({"persona": p, "method": m, "scorer": s, "value": e.value, "ci_low": e.ci_low,
                         "ci_high": e.ci_high, "n": e.n, "n_unscored": res.n_unscored,
                         "shift": None if sh is None else sh.value, "shift_ci_low": None if sh is None else sh.ci_low,
                         "shift_ci_high": None if sh is None else sh.ci_high})
        return pd.DataFrame(rows)

    def correlation_table(self):
        import pandas as pd

        return pd.DataFrame([{"scorer": s, "spearman_rho": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
                              "p_value": e.p_value, "n_personas": e.n} for s, e in self.correlations.items()])

    def strength_table(self):
        import pandas as pd

        rows = []
        for p, d in self.strength["personas"].items():
            rows.append({"persona": p, "prompt_kl": d["prompt_kl"].value, "prompt_kl_ci": (d["prompt_kl"].ci_low,
                                                                                           d["prompt_kl"].ci_high),
                         "steer_kl": d["steer_kl"].value, "steer_kl_ci": (d["steer_kl"].ci_low, d["steer_kl"].ci_high),
                         "norm": d["norm"], "multiplier": d["multiplier"], "relative": d.get("relative")})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Per scorer: the rank agreement of the prompted and the steered shifts across personas."""
        parts = [f"{sc}: Spearman {self.correlations[sc]}" if sc in self.correlations else f"{sc}: no correlation"
                 for sc in self.scorers]
        return (f"{len(self.personas)} personas by system prompt vs by steering at layer {self.layer} (matched "
                f"strength): " + "; ".join(parts))

    def report(self) -> str:
        s = self.strength
        lines = [f"Persona comparison at layer {self.layer}, positions={self.positions}; matched strength: "
                 f"mean next-token KL = {s['target']:.4g} nats on {s['n_prompts']} neutral prompts ({s['how']})"]
        for p in self.personas:
            d = s["personas"][p]
            lines.append(f"  {p}: prompt KL {d['prompt_kl']}; steer norm {d['norm']:.3g} "
                         f"(x{d['multiplier']:.3g} of the vector), KL {d['steer_kl']}")
        for sc in self.scorers:
            lines.append(f"[{sc}]")
            for p in self.personas:
                cells = []
                for m in METHODS:
                    r = self.scores.get((p, m, sc))
                    if r is not None:
                        sh = self.shifts.get((p, m, sc))
                        cells.append(f"{m} {r.aggregate.format()}" + (f" shift {sh.value:+.3f} [{sh.ci_low:+.3f}, "
                                                                       f"{sh.ci_high:+.3f}]" if sh else ""))
                lines.append(f"  {p}: " + " | ".join(cells))
            if sc in self.correlations:
                lines.append(f"  Spearman(prompt shift, steer shift) across personas: {self.correlations[sc]}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def persona_comparison(model: Model, personas: Sequence[Persona | str], vectors: PersonaVectors | Mapping[str, SteeringVector],
                       *, layer: int, scorers: Sequence[Any] | None = None, strength: Any = "median_prompt_kl",
                       kl_prompts: Sequence[str] | None = None, positions: Any = "all", prompt_index: int = 0,
                       norms: Any = None, seed: int = 0, progress: bool = False) -> PersonaComparison:
    """Impose each persona by system prompt and by steering, score both (and the baseline) with the
    same scorers, and compare (see the module docstring).

    Args:
        personas: :class:`Persona` objects or names of shipped personas (at least 3 for a correlation).
        vectors: persona vectors (:func:`steering.personas.persona_vectors`) by persona name.
        layer: the steering layer.
        scorers: objects with ``name`` and ``score(model, persona, condition)``; default
            ``[StatementsScorer()]``.
        strength: ``"median_prompt_kl"`` (default), ``"per_persona_prompt_kl"`` (each vector matched
            to its own prompt's KL), a float (a fixed target KL in nats), or a :class:`StrengthMatch`.
        kl_prompts: neutral prompts for the KL (default: the shipped neutral prompts).
        positions: steering position policy for every scorer.
        prompt_index: which of the persona's system prompts imposes it in the ``prompt`` method.
    """
    from .data import neutral_prompts

    check_positions(positions)
    ps = [p if isinstance(p, Persona) else load_personas([p])[0] for p in personas]
    names = [p.name for p in ps]
    vecs = {n: vectors[n] for n in names}
    scorers = list(scorers) if scorers is not None else [StatementsScorer(seed=seed)]
    kl_prompts = list(kl_prompts) if kl_prompts is not None else neutral_prompts()
    notes: list[str] = []

    # ---- matched strength
    pk = prompt_kls(model, {p.name: p.system_prompt(prompt_index) for p in ps}, kl_prompts)
    pkl = {n: mean_estimate(pk[n], seed=seed, statistic="prompt_kl") for n in names}
    if isinstance(strength, StrengthMatch):
        sm, how = strength, "given StrengthMatch"
    else:
        if strength == "median_prompt_kl":
            targets = {n: float(np.median([e.value for e in pkl.values()])) for n in names}
            how = "target = median over personas of the system prompts' KL"
        elif strength == "per_persona_prompt_kl":
            targets = {n: pkl[n].value for n in names}
            how = "each vector matched to its own system prompt's KL"
        elif isinstance(strength, (int, float)) and not isinstance(strength, bool):
            targets = {n: float(strength) for n in names}
            how = "fixed target"
        else:
            raise ValueError(f"strength must be 'median_prompt_kl', 'per_persona_prompt_kl', a number or a "
                             f"StrengthMatch; got {strength!r}")
        sm = match_strength(model, vecs, kl_prompts, layer=layer, target=targets, positions=positions, norms=norms,
                            seed=seed, progress=progress)
    strength_info = {"target": sm.target, "how": how, "measure": "mean next-token KL(unsteered || steered), nats",
                     "n_prompts": len(kl_prompts), "positions": str(positions), "personas": {}}
    ops = {}
    for n in names:
        r = sm.row(n)
        ops[n] = sm.operator(n, vecs[n], positions=positions)
        strength_info["personas"][n] = {"prompt_kl": pkl[n], "steer_kl": r["achieved"], "target": r.get("target"),
                                        "norm": r["norm"],
                                        "multiplier": r["multiplier"], "relative": r.get("relative")}

    # ---- score every condition
    scores: dict[tuple, Any] = {}
    shifts: dict[tuple, Any] = {}
    work = [(p, sc) for p in ps for sc in scorers]
    if progress:
        from tqdm.auto import tqdm

        work = tqdm(work, desc="persona comparison", unit="persona x scorer")
    for p, sc in work:
        conds = [Condition("baseline"), Condition("prompt", system=p.system_prompt(prompt_index)),
                 Condition("steer", operators=(ops[p.name],))]
        failed = False
        for c in conds:
            try:
                scores[(p.name, c.method, sc.name)] = sc.score(model, p, c)
            except ValueError as e:  # e.g. a judge whose every verdict is unparseable: report, do not abort
                notes.append(f"{sc.name} could not score {p.name}/{c.method}: {e}")
                failed = True
        if failed:
            continue
        base = scores[(p.name, "baseline", sc.name)].values
        for m in ("prompt", "steer"):
            try:
                shifts[(p.name, m, sc.name)] = paired_difference(scores[(p.name, m, sc.name)].values, base, seed=seed,
                                                                 statistic=f"{sc.name} shift ({m} - baseline)")
            except ValueError as e:
                notes.append(f"{sc.name}: no {m} shift for {p.name}: {e}")
    correlations = {}
    from workbench.stats import StatsError, spearman

    for sc in scorers:
        have = [n for n in names if (n, "prompt", sc.name) in shifts and (n, "steer", sc.name) in shifts]
        if len(have) < len(names):
            notes.append(f"{sc.name}: correlation over {len(have)} of {len(names)} personas (the others could not be "
                         f"scored)")
        x = [shifts[(n, "prompt", sc.name)].value for n in have]
        y = [shifts[(n, "steer", sc.name)].value for n in have]
        try:
            correlations[sc.name] = spearman(x, y, seed=seed)
        except StatsError as e:
            notes.append(f"{sc.name}: no Spearman correlation ({e})")
    prov = model.provenance(data_hash=data_hash([p.to_dict() for p in ps], kl_prompts,
                                                {n: vecs[n].provenance.data_hash for n in names}),
                            seed=seed, sites=(vecs[names[0]].site_at(layer).name,),
                            extra={"protocol": "Persona Non Grata: system prompt vs steering at matched strength",
                                   "prompt_index": prompt_index})
    return PersonaComparison(names, [sc.name for sc in scorers], layer, positions, scores, shifts, correlations,
                             strength_info, notes, ops, prov)


def persona_effects(comparison: PersonaComparison) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per (persona, scorer) unit ``"persona / scorer"``: the steering effect and the prompting effect (each the
    method's mean shift from the baseline), for the units that have both."""
    df = comparison.to_dataframe()
    d = df[df["method"].isin(["prompt", "steer"])].dropna(subset=["shift"])
    piv = d.pivot_table(index=["persona", "scorer"], columns="method", values="shift", aggfunc="mean").dropna()
    if piv.empty or not {"prompt", "steer"} <= set(piv.columns):
        return [], np.zeros(0), np.zeros(0)
    units = [f"{p} / {s}" for p, s in piv.index]
    return units, piv["steer"].to_numpy(float), piv["prompt"].to_numpy(float)


@dataclass
class SteeringSweep:
    """A persona vector added at several coefficients, scored by the comparison's scorers (Chen et al. 2025's
    steering evaluation: trait expression against the coefficient).

    ``scores``: ``{(coefficient, scorer): ScoreResult}`` (coefficient 0 is the unsteered model);
    ``vector_norm``: the norm of the added vector at ``layer`` (``scale="multiplier"``: coefficient x vector)."""

    persona: str
    layer: int
    coefficients: list[float]
    scorers: list[str]
    scores: dict[tuple, Any]
    vector_norm: float
    positions: Any
    seed: int = 0
    provenance: Provenance = field(default_factory=Provenance)

    def curve(self, scorer: str) -> dict:
        return {c: self.scores[(c, scorer)].aggregate for c in self.coefficients}

    def effect(self, scorer: str) -> Any:
        """Score at the largest coefficient minus score at the smallest, paired over items (bootstrap CI)."""
        lo, hi = min(self.coefficients), max(self.coefficients)
        return paired_difference(self.scores[(hi, scorer)].values, self.scores[(lo, scorer)].values, seed=self.seed,
                                 statistic=f"{scorer}: x{hi:g} - x{lo:g}")

    def adjacent(self, scorer: str) -> list:
        cs = sorted(self.coefficients)
        return [paired_difference(self.scores[(b, scorer)].values, self.scores[(a, scorer)].values, seed=self.seed,
                                  statistic=f"{scorer}: x{b:g} - x{a:g}") for a, b in zip(cs, cs[1:])]

    def no_significant_drop(self, scorer: str) -> bool:
        """No step to a larger coefficient lowers the score significantly (every adjacent CI reaches 0 or above)."""
        return all(e.ci_high >= 0 for e in self.adjacent(scorer))

    def summary(self) -> str:
        """Per scorer: the effect of the largest minus the smallest coefficient (paired CI)."""
        parts = []
        for sc in self.scorers:
            e = self.effect(sc)
            parts.append(f"{sc}: {e.value:+.3g} [{e.ci_low:+.3g}, {e.ci_high:+.3g}]")
        return (f"steering sweep '{self.persona}' at layer {self.layer}, coefficients {self.coefficients} "
                f"(vector norm {self.vector_norm:.3g}): " + "; ".join(parts))

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for (c, sc), res in sorted(self.scores.items()):
            e = res.aggregate
            rows.append({"persona": self.persona, "layer": self.layer, "coefficient": c, "scorer": sc, "value": e.value,
                         "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n, "vector_norm": self.vector_norm})
        return pd.DataFrame(rows)


def steering_sweep(model: Model, persona: Persona | str, vector: SteeringVector, *, layer: int,
                   coefficients: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0), scorers: Sequence[Any] | None = None,
                   positions: Any = "all", seed: int = 0, progress: bool = False) -> SteeringSweep:
    """Score ``persona`` under ``vector`` added at ``layer`` with each coefficient (multiples of the vector), with
    the same scorer protocol as :func:`persona_comparison` (``score(model, persona, condition)``)."""
    check_positions(positions)
    p = persona if isinstance(persona, Persona) else load_personas([persona])[0]
    scorers = list(scorers) if scorers is not None else [StatementsScorer(seed=seed)]
    coefs = sorted({float(c) for c in coefficients} | {0.0})
    work = [(c, sc) for c in coefs for sc in scorers]
    if progress:
        from tqdm.auto import tqdm

        work = tqdm(work, desc=f"steering sweep ({p.name})", unit="cell")
    scores = {}
    for c, sc in work:
        cond = Condition("baseline") if c == 0 else Condition("steer", operators=(vector.at(layer, c,
                                                                                              positions=positions),))
        scores[(c, sc.name)] = sc.score(model, p, cond)
    prov = model.provenance(data_hash=data_hash(p.to_dict(), vector.provenance.data_hash), seed=seed,
                            sites=(vector.site_at(layer).name,),
                            extra={"protocol": "persona-vector steering sweep (Chen et al. 2025)", "coefficients": coefs,
                                   "positions": str(positions)})
    return SteeringSweep(p.name, layer, coefs, [sc.name for sc in scorers], scores, float(vector.vector(layer).norm()),
                         positions, seed, prov)
