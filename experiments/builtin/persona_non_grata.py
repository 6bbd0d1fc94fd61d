"""``persona-non-grata``: personas the model should not take on, imposed by prompt and by steering.

Three studies, each with its cross-check: (1) every shipped persona imposed by system prompt vs by
its persona vector at matched KL, scored by the same scorers; (2) undesirable personas steered at
increasing coefficients against the attack success rate on harmful requests, with an equal-norm
random control; (3) CAA layer x multiplier sweeps on A/B behaviours with the random control.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from . import studies


@dataclass
class PersonaComparisonSection:
    enabled: bool = True
    personas: list[str] = field(default_factory=list)  # empty: every shipped persona
    layer: int = 12
    n_questions: int = 8
    n_pairs: int = 3
    n_statements: int = 40
    n_harmful: int = 16
    max_new_tokens: int = 32
    judge: bool = True


@dataclass
class AttackSuccessSection:
    enabled: bool = True
    personas: list[str] = field(default_factory=lambda: ["psychopathy", "power_seeking", "deception"])
    layer: int = 12
    coefficients: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0])
    n_harmful: int = 24
    harmful_source: str = "jailbreakbench"
    max_new_tokens: int = 32


@dataclass
class CAASection:
    enabled: bool = True
    behaviours: list[str] = field(default_factory=lambda: ["myopic-reward", "sycophancy"])
    layers: list[int] = field(default_factory=lambda: [6, 9, 12, 15, 18])
    multipliers: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    n_build: int = 150
    n_select: int = 30
    n_test: int = field(default=0, metadata={"zero": "the whole test split"})


@dataclass
class PersonaNonGrataConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    comparison: PersonaComparisonSection = field(default_factory=PersonaComparisonSection)
    attack_success: AttackSuccessSection = field(default_factory=AttackSuccessSection)
    caa: CAASection = field(default_factory=CAASection)


@experiment("persona-non-grata", PersonaNonGrataConfig,
            "personas by prompt vs by steering; steering toward undesirable personas vs attack success; CAA sweeps")
def run(ctx: RunContext, cfg: PersonaNonGrataConfig) -> None:
    m = ctx.model()
    s = cfg.seed
    top = m.n_layers - 1
    if cfg.comparison.enabled:
        c = cfg.comparison
        studies.persona_study(ctx, m, personas=c.personas or None, layer=min(c.layer, top), n_questions=c.n_questions,
                              n_pairs=c.n_pairs, n_statements=c.n_statements, n_harmful=c.n_harmful,
                              max_new_tokens=c.max_new_tokens, judge=c.judge, seed=s)
    if cfg.attack_success.enabled:
        a = cfg.attack_success
        studies.persona_asr_study(ctx, m, personas=a.personas, layer=min(a.layer, top), coefficients=a.coefficients,
                                  n_harmful=a.n_harmful, harmful_source=a.harmful_source,
                                  max_new_tokens=a.max_new_tokens, seed=s)
    if cfg.caa.enabled:
        k = cfg.caa
        studies.caa_study(ctx, m, behaviours=k.behaviours, layers=[L for L in k.layers if L <= top],
                          multipliers=k.multipliers, n_build=k.n_build, n_select=k.n_select, n_test=k.n_test or None,
                          seed=s)
