"""``cross-check``: the main job. Every method of the workbench, each paired with a behavioural measurement.

On the default model it fits ``make demo``'s budget (15 minutes on 2 CPU cores): each study runs at
a reduced size; the dedicated experiments run them in full. Sections (one resumable step each):

1. evaluation awareness: a test-vs-deploy probe with controls, and its score shift vs the refusal
   shift when benchmark-framed harmful requests are rewritten into a user's voice;
2. personas: imposed by system prompt vs by steering at matched KL, scored by the same scorers;
3. logit lens: the depth at which the answer resolves vs the model's confidence;
4. induction heads: detector score vs the effect of ablating the head on copying;
5. patching: exact head patching on factual recall vs attribution patching.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from . import studies


@dataclass
class EvalAwarenessSection:
    enabled: bool = True
    layers: list[int] = field(default_factory=lambda: list(range(0, 30, 3)) + [29])
    n_topics: int = 20
    n_harmful: int = 64  # at most: the harmful_val split holds 39, all used
    max_new_tokens: int = 24
    artifact: bool = True


@dataclass
class PersonaSection:
    enabled: bool = True
    personas: list[str] = field(default_factory=list)  # empty: every shipped persona (10)
    layer: int = 12
    n_questions: int = 4
    n_pairs: int = 2
    n_statements: int = 24
    n_harmful: int = 8
    max_new_tokens: int = 24
    judge: bool = False
    n_kl_prompts: int = 16


@dataclass
class InductionSection:
    enabled: bool = True
    n_top: int = 10
    n_random: int = 10
    n_seqs: int = 8
    n_copy: int = 16


@dataclass
class PatchingSection:
    enabled: bool = True
    resid_sweep: bool = True
    k: int = 10


@dataclass
class LensSection:
    enabled: bool = True


@dataclass
class CrossCheckConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    eval_awareness: EvalAwarenessSection = field(default_factory=EvalAwarenessSection)
    personas: PersonaSection = field(default_factory=PersonaSection)
    logit_lens: LensSection = field(default_factory=LensSection)
    induction: InductionSection = field(default_factory=InductionSection)
    patching: PatchingSection = field(default_factory=PatchingSection)


@experiment("cross-check", CrossCheckConfig,
            "the main job: eval-awareness probe vs behaviour shift, prompted vs steered personas, logit lens, "
            "induction heads, patching vs attribution; each with its cross-check verdict")
def run(ctx: RunContext, cfg: CrossCheckConfig) -> None:
    m = ctx.model()
    s = cfg.seed
    if cfg.eval_awareness.enabled:
        e = cfg.eval_awareness
        studies.eval_awareness_study(ctx, m, layers=[L for L in e.layers if L < m.n_layers] or None, n_topics=e.n_topics,
                                     n_harmful=e.n_harmful, max_new_tokens=e.max_new_tokens, artifact=e.artifact,
                                     seed=s)
    if cfg.personas.enabled:
        p = cfg.personas
        studies.persona_study(ctx, m, personas=p.personas or None, layer=min(p.layer, m.n_layers - 1),
                              n_questions=p.n_questions, n_pairs=p.n_pairs, n_statements=p.n_statements,
                              n_harmful=p.n_harmful, max_new_tokens=p.max_new_tokens, judge=p.judge,
                              n_kl_prompts=p.n_kl_prompts, seed=s)
    if cfg.logit_lens.enabled:
        studies.logit_lens_study(ctx, m, seed=s)
    if cfg.induction.enabled:
        i = cfg.induction
        studies.induction_study(ctx, m, n_top=i.n_top, n_random=i.n_random, n_seqs=i.n_seqs, n_copy=i.n_copy, seed=s)
    if cfg.patching.enabled:
        studies.patching_study(ctx, m, resid_sweep=cfg.patching.resid_sweep, k=cfg.patching.k, seed=s)
