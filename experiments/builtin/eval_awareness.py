"""``eval-awareness``: the evaluation-awareness study at full size, and the probe on Nguyen et al.'s sets.

``[eval_awareness]``: a test-vs-deploy probe on every layer (controls, the token-artifact control) on
the project's framing set, benchmark-framed harmful requests rewritten into a user's voice, and the
per-prompt probe-score shift cross-checked against the refusal shift measured by the shared refusal
scorer (:mod:`experiments.studies.eval_awareness`). ``[nguyen]``: the same kind of probe on Nguyen et
al.'s contrastive set read at the answer token with its controls, the framing probe's transfer to
their test-framed questions vs natural prompts, and Probe-Rewrite-Evaluate on their questions
(:mod:`experiments.studies.eval_awareness_shared`; read from ``../shared/data``, skipped without it).

Each (model, study) is a unit on the executor (:func:`experiments.tasks.study_task`), as in ``cross-check``.
Several models (``--model A --model B``) give one step per model per study and ``compare-probe``: the framing
probe's AUROC by depth, every model on one figure (:func:`experiments.comparison.write_comparisons`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from ..studies import eval_awareness, eval_awareness_shared


@dataclass
class EvalAwarenessConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    eval_awareness: eval_awareness.EvalAwarenessStudy = field(default_factory=eval_awareness.EvalAwarenessStudy)
    nguyen: eval_awareness_shared.NguyenSetsStudy = field(default_factory=eval_awareness_shared.NguyenSetsStudy)


PRESETS = {
    "quick": {"eval_awareness": {"layers": [0.2, 1.0], "n_topics": 8, "n_harmful": 12, "max_new_tokens": 8,
                                 "artifact": False, "n_resamples": 200},
              "nguyen": {"layers": [0.2, 1.0], "n_contrastive": 24, "n_transfer": 16, "n_shift": 8,
                         "n_resamples": 200}},
}


@experiment("eval-awareness", EvalAwarenessConfig,
            "evaluation-awareness probe per layer with controls; probe-score shift vs refusal shift under "
            "deploy-style rewrites; several models (--model A --model B) compared by depth")
def run(ctx: RunContext, cfg: EvalAwarenessConfig) -> None:
    from dataclasses import asdict

    from ..comparison import write_comparisons
    from ..tasks import study_task, study_units

    names = ctx.model_names()
    todo = study_units(cfg, names, [("eval_awareness", eval_awareness, {}),
                                    ("nguyen", eval_awareness_shared, {"framing": asdict(cfg.eval_awareness)})],
                       out=ctx.out.resolve())
    payloads = ctx.units("studies", study_task, todo)
    if len(names) > 1:
        keys = {(t["study"], t["model"]): (s, p) for (s, t), p in zip(todo, payloads)}
        write_comparisons(ctx, [(n, cfg.model.backend) for n in names], {k: v[0] for k, v in keys.items()},
                          {k: v[1] for k, v in keys.items()}, seed=cfg.seed)
