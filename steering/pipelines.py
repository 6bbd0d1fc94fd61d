"""End-to-end steering pipelines on any model and the shipped datasets (:mod:`workbench.datasets`): what the
experiments' steering studies (``experiments/studies/caa.py``, ``personas.py``) call. Each returns a typed
result with ``report()``, ``to_dataframe()`` and ``save(out)``.

- :func:`run_caa_experiment`: CAA vectors from the ``generate`` split (Rimsky et al. 2024), best
  layer chosen on held-out ``generate`` pairs, layer x multiplier sweep on the 50 ``test`` items
  with the equal-norm random control.
- :func:`run_persona_experiment`: persona vectors (Chen et al. 2025) for the shipped personas, then
  the prompt-vs-steering comparison at matched KL (Persona Non Grata) with the persona-statement
  A/B scorer, refusal on harmful requests, and a trait judge.

The command lines that used to live here (``python -m steering.runs``) are ``workbench run persona-non-grata``
(CAA sweeps, personas by prompt vs steering, steering vs attack success) and ``workbench run cross-check``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from workbench.results import Provenance

from .build import build_caa_vectors
from .compare import HarmfulScorer, PersonaComparison, StatementsScorer, TraitJudgeScorer, persona_comparison
from .data import load_caa, load_harmful
from .personas import PersonaVectors, load_personas, persona_vectors
from .sweeps import SweepResult, caa_sweep
from .vector import SteeringVector

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["CAAExperiment", "caa_items", "run_caa_experiment", "PersonaExperiment", "run_persona_experiment"]


@dataclass
class CAAExperiment:
    vectors: dict[str, SteeringVector]
    sweep: SweepResult
    settings: dict = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)

    def report(self) -> str:
        head = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"CAA experiment ({head})\n" + self.sweep.report()

    def to_dataframe(self):
        return self.sweep.to_dataframe()

    def save(self, out: str | Path) -> Path:
        from workbench.store import atomic_write_text

        out = Path(out)
        for b, v in self.vectors.items():
            v.save(out / "vectors" / b)
        atomic_write_text(out / "sweep.csv", self.to_dataframe().to_csv(index=False))
        atomic_write_text(out / "report.txt", self.report() + "\n")
        from .plots import plot_sweep

        plot_sweep(self.sweep).savefig(out / "sweep.png", dpi=120)
        return out


def caa_items(behaviour: str, *, n_build: int = 150, n_select: int = 30, n_test: int | None = None,
              seed: int = 0) -> tuple[list, list, list]:
    """The items of one behaviour in :func:`run_caa_experiment`: ``(build, select, test)``: the ``generate`` pairs
    the vector is built from and the held-out ones the layer is selected on (one seeded shuffle), and the ``test``
    items scored."""
    gen = load_caa(behaviour, "generate")
    idx = list(range(len(gen)))
    random.Random(seed).shuffle(idx)
    return ([gen[i] for i in idx[:n_build]], [gen[i] for i in idx[n_build:n_build + n_select]],
            load_caa(behaviour, "test", n=n_test, seed=seed))


def run_caa_experiment(model: Model, behaviours: Sequence[str] = ("myopic-reward", "sycophancy"), *,
                       layers: Sequence[int] = (6, 9, 12, 15, 18), multipliers: Sequence[float] = (-2, -1, 0, 1, 2),
                       n_build: int = 150, n_select: int = 30, n_test: int | None = None,
                       positions: Any = "after_instruction", scale: str = "multiplier", norms: Any = None,
                       seed: int = 0, batch_size: int = 8, progress: bool = True,
                       out: str | Path | None = None) -> CAAExperiment:
    """CAA vectors per behaviour, then :func:`steering.sweeps.caa_sweep` with layer selection on held-out pairs."""
    vectors, tests, selects = {}, {}, {}
    for b in behaviours:
        build, selects[b], tests[b] = caa_items(b, n_build=n_build, n_select=n_select, n_test=n_test, seed=seed)
        vectors[b] = build_caa_vectors(model, build, layers=list(layers), name=b, batch_size=batch_size,
                                       progress=progress)
    sweep = caa_sweep(model, vectors, tests, list(layers), multipliers, control=True, select_items=selects,
                      positions=positions, scale=scale, norms=norms, seed=seed, batch_size=batch_size,
                      progress=progress)
    settings = {"model": model.name, "behaviours": list(behaviours), "layers": list(layers),
                "multipliers": list(multipliers), "n_build": n_build, "n_select": n_select,
                "n_test": {b: len(t) for b, t in tests.items()}, "positions": positions, "scale": scale}
    res = CAAExperiment(vectors, sweep, settings, sweep.provenance)
    if out is not None:
        res.save(out)
    return res


@dataclass
class PersonaExperiment:
    vectors: PersonaVectors
    comparison: PersonaComparison
    settings: dict = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)

    def report(self) -> str:
        head = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"Persona experiment ({head})\n" + self.comparison.report()

    def to_dataframe(self):
        return self.comparison.to_dataframe()

    def save(self, out: str | Path) -> Path:
        from workbench.store import atomic_write_text

        out = Path(out)
        self.vectors.save(out / "persona_vectors")
        atomic_write_text(out / "comparison.csv", self.to_dataframe().to_csv(index=False))
        atomic_write_text(out / "correlations.csv", self.comparison.correlation_table().to_csv(index=False))
        atomic_write_text(out / "strength.csv", self.comparison.strength_table().to_csv(index=False))
        atomic_write_text(out / "report.txt", self.report() + "\n")
        from .plots import plot_persona_comparison

        plot_persona_comparison(self.comparison).savefig(out / "comparison.png", dpi=120)
        return out


def run_persona_experiment(model: Model, personas: Sequence[str] | None = None, *, layer: int = 12,
                           source: str = "response", n_questions: int = 8, n_pairs: int = 3, max_new_tokens: int = 32,
                           n_statements: int = 40, n_harmful: int = 16, harmful_source: str = "jailbreakbench",
                           judge: bool = True, strength: Any = "median_prompt_kl", positions: Any = "all",
                           n_kl_prompts: int | None = None, seed: int = 0, progress: bool = True,
                           out: str | Path | None = None) -> PersonaExperiment:
    """Persona vectors at ``layer`` and the prompt-vs-steering comparison with three scorers."""
    ps = load_personas(personas)
    pv = persona_vectors(model, ps, [layer], n_questions=n_questions, n_pairs=n_pairs, source=source,
                         max_new_tokens=max_new_tokens, seed=seed, progress=progress)
    scorers: list[Any] = [StatementsScorer(n=n_statements, seed=seed)]
    if n_harmful:
        scorers.append(HarmfulScorer(load_harmful(harmful_source, n=n_harmful, seed=seed),
                                     max_new_tokens=max_new_tokens, seed=seed))
    if judge:
        from .data import persona_questions

        # held-out questions: those not used to build the vectors
        scorers.append(TraitJudgeScorer(persona_questions()[n_questions:n_questions + 8],
                                        max_new_tokens=max_new_tokens, seed=seed))
    kl_prompts = None
    if n_kl_prompts is not None:
        from .data import neutral_prompts

        kl_prompts = neutral_prompts()[:n_kl_prompts]
    comp = persona_comparison(model, ps, pv, layer=layer, scorers=scorers, strength=strength, positions=positions,
                              kl_prompts=kl_prompts, seed=seed, progress=progress)
    settings = {"model": model.name, "layer": layer, "source": source, "n_questions": n_questions, "n_pairs": n_pairs,
                "max_new_tokens": max_new_tokens, "n_statements": n_statements, "n_harmful": n_harmful,
                "judge": "the model itself, logit Yes/No judge (weak)" if judge else None, "positions": positions,
                "n_kl_prompts": len(kl_prompts) if kl_prompts is not None else "all shipped neutral prompts"}
    res = PersonaExperiment(pv, comp, settings, comp.provenance)
    if out is not None:
        res.save(out)
    return res
