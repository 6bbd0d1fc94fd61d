"""``cross-check``: the main job. Every method of the workbench, each paired with a behavioural measurement.

Sections (one resumable step each; each is a study of ``experiments/studies`` and its TOML section):

1. ``[eval_awareness]``: a test-vs-deploy probe with controls, and its score shift vs the refusal
   shift when benchmark-framed harmful requests are rewritten into a user's voice;
2. ``[personas]``: personas imposed by system prompt vs by steering at matched KL, same scorers;
3. ``[logit_lens]``: the depth at which the answer resolves vs the model's confidence;
4. ``[induction]``: detector score vs the effect of ablating the head on copying;
5. ``[patching]``: exact head patching on factual recall vs attribution patching.

Each (model, study) is one unit of work run through the executor (:func:`experiments.tasks.study_task`;
with ``--executor ray`` on a model worker per model) and committed as its own resumable step. Several
models (``--model A --model B``, or ``models = [...]`` in ``[model]``) give one step per model per study
and the comparison sections of :mod:`experiments.comparison`.

Every parameter has one default, in its study's config dataclass (the study's full size, which the
dedicated experiments run). The main job runs them smaller so that it fits ``make demo``'s budget
(about 15 minutes on 2 CPU cores on the default model): that is the preset ``main``, this
experiment's default. ``--preset defaults`` runs every study at its full size; ``--preset quick``
is a minutes-long check of the whole pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from ..studies import eval_awareness, induction, logit_lens, patching, personas


@dataclass
class CrossCheckConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    eval_awareness: eval_awareness.EvalAwarenessStudy = field(default_factory=eval_awareness.EvalAwarenessStudy)
    personas: personas.PersonaStudy = field(default_factory=personas.PersonaStudy)
    logit_lens: logit_lens.LogitLensStudy = field(default_factory=logit_lens.LogitLensStudy)
    induction: induction.InductionStudy = field(default_factory=induction.InductionStudy)
    patching: patching.PatchingStudy = field(default_factory=patching.PatchingStudy)


_MAIN = {
    # every 3rd layer of 30 and the last: 0, 3, ..., 27, 29
    "eval_awareness": {"layers": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "n_topics": 20,
                       "max_new_tokens": 24, "n_resamples": 1000},
    "personas": {"n_questions": 4, "n_pairs": 2, "n_statements": 24, "n_harmful": 8, "max_new_tokens": 24,
                 "judge": False, "n_kl_prompts": 16},
    "induction": {"n_top": 10, "n_random": 10, "n_seqs": 8, "n_copy": 16},
}

#: named config overrides (``workbench run cross-check --preset NAME``); ``main`` is the default
PRESETS = {
    "main": _MAIN,
    "quick": {
        "eval_awareness": {**_MAIN["eval_awareness"], "layers": [0.2, 0.5, 1.0], "n_topics": 8, "n_harmful": 8,
                           "max_new_tokens": 8, "n_resamples": 200, "artifact": False},
        "personas": {**_MAIN["personas"], "personas": ["agreeableness", "psychopathy", "power_seeking"],
                     "n_questions": 2, "n_pairs": 1, "n_statements": 8, "n_harmful": 4, "max_new_tokens": 8,
                     "n_kl_prompts": 4},
        "induction": {"n_top": 5, "n_random": 5, "n_seqs": 2, "n_copy": 4},
        "patching": {"resid_sweep": False},
    },
}
DEFAULT_PRESET = "main"


#: the studies of the main job, in report order: (config section, study module)
STUDIES = (("eval_awareness", eval_awareness), ("personas", personas), ("logit_lens", logit_lens),
           ("induction", induction), ("patching", patching))


def units(cfg: CrossCheckConfig, names: list[str]) -> list[tuple[str, dict]]:
    """One (step name, task) per (model, enabled study), model by model. With one model the steps keep the
    studies' own names; with several, a step is ``<study step>@<model>`` and its section title names the model."""
    from ..tasks import study_units

    return study_units(cfg, names, [(attr, study, {}) for attr, study in STUDIES])


@experiment("cross-check", CrossCheckConfig,
            "the main job: eval-awareness probe vs behaviour shift, prompted vs steered personas, logit lens, "
            "induction heads, patching vs attribution; each with its cross-check verdict; several models "
            "(--model A --model B) compared side by side")
def run(ctx: RunContext, cfg: CrossCheckConfig) -> None:
    from ..comparison import write_comparisons
    from ..tasks import study_task

    names = ctx.model_names()
    todo = units(cfg, names)
    payloads = ctx.units("studies", study_task, todo)
    if len(names) > 1:
        keys = {(t["study"], t["model"]): (s, p) for (s, t), p in zip(todo, payloads)}
        write_comparisons(ctx, [(n, cfg.model.backend) for n in names], {k: v[0] for k, v in keys.items()},
                          {k: v[1] for k, v in keys.items()}, seed=cfg.seed)
