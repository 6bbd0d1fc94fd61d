"""``persona-non-grata``: personas the model should not take on, imposed by prompt and by steering.

Three studies, each with its cross-check and TOML section: (1) ``[personas]``: every shipped persona
imposed by system prompt vs by its persona vector at matched KL, scored by the same scorers;
(2) ``[attack_success]``: undesirable personas steered at increasing coefficients against the attack
success rate on harmful requests, with an equal-norm random control (a grid on the executor: the vectors, a task
per (persona, coefficient), a final unit merging them: :func:`experiments.studies.persona_asr.grid_run`); (3) ``[caa]``: CAA layer x
multiplier sweeps on A/B behaviours with the random control, run as a grid on the executor (a vector task per
behaviour, a task per (behaviour, layer) for its multipliers, a final unit merging them:
:func:`experiments.studies.caa.grid_run`; resumable shard by shard).

Several models (``--model A --model B``, or ``models = [...]`` in ``[model]``): ``[personas]`` is a (model, study)
unit per model on the executor (:func:`experiments.tasks.study_units`, as in ``cross-check``), both grids run over
every model, each model's steps are ``<step>@<model>``, and the comparison steps of
:func:`experiments.comparison.write_comparisons` follow: ``compare-personas`` (persona danger rankings by prompt
and by steering per model, Spearman between every pair of models), ``compare-attack-success`` (per persona, each
model's attack-success change under steering vs the equal-norm random control, steered - random at the largest
coefficient; with 3 personas or more, Spearman between models of the personas ranked by it) and ``compare-caa``
(per behaviour, each model's selected layer as a fraction of depth and its steering effect vs the random
control's, and the effect at every candidate layer by depth). With one model the steps are ``personas``,
``persona-asr``, ``caa-sweep``, as ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from ..studies import caa, persona_asr, personas


@dataclass
class PersonaNonGrataConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    # the vector store the grids' vector tasks write and their sweep tasks read (safetensors + sha256); empty:
    # <run>/vectors. Give a directory every Ray worker sees when they run on several machines.
    vector_store: str = ""
    personas: personas.PersonaStudy = field(default_factory=personas.PersonaStudy)
    attack_success: persona_asr.PersonaASRStudy = field(default_factory=persona_asr.PersonaASRStudy)
    caa: caa.CAAStudy = field(default_factory=caa.CAAStudy)


PRESETS = {
    "quick": {
        "personas": {"personas": ["agreeableness", "psychopathy", "power_seeking"], "n_questions": 2, "n_pairs": 1,
                     "n_statements": 8, "n_harmful": 4, "max_new_tokens": 8, "judge": False, "n_kl_prompts": 4},
        "attack_success": {"personas": ["psychopathy"], "coefficients": [0.0, 2.0], "n_harmful": 6, "n_questions": 2,
                           "n_pairs": 1, "max_new_tokens": 8},
        "caa": {"behaviours": ["sycophancy"], "layers": [0.4], "multipliers": [-1.0, 0.0, 1.0], "n_build": 20,
                "n_select": 6, "n_test": 12},
    },
}


@experiment("persona-non-grata", PersonaNonGrataConfig,
            "personas by prompt vs by steering; steering toward undesirable personas vs attack success; CAA sweeps; "
            "several models (--model A --model B) compared side by side")
def run(ctx: RunContext, cfg: PersonaNonGrataConfig) -> None:
    from ..comparison import write_comparisons
    from ..tasks import study_task, study_units

    names = ctx.model_names()
    steps: dict[tuple[str, str], str] = {}
    payloads: dict[tuple[str, str], dict] = {}
    # [personas]: a (model, study) unit per model on the executor
    todo = study_units(cfg, names, [("personas", personas, {})])
    if todo:
        for (s, t), p in zip(todo, ctx.units("studies", study_task, todo)):
            steps[(t["study"], t["model"])], payloads[(t["study"], t["model"])] = s, p
    # grids on the executor: vectors per model (or behaviour), a task per coefficient (or layer), merged per model
    if cfg.attack_success.enabled:
        for n, s, p in persona_asr.grid_run(ctx, cfg.attack_success, names, seed=cfg.seed,
                                               store=cfg.vector_store or None):
            steps[("persona_asr", n)], payloads[("persona_asr", n)] = s, p
    if cfg.caa.enabled:
        for n, s, p in caa.grid_run(ctx, cfg.caa, names, seed=cfg.seed, store=cfg.vector_store or None):
            steps[("caa", n)], payloads[("caa", n)] = s, p
    if len(names) > 1:
        write_comparisons(ctx, [(n, cfg.model.backend) for n in names], steps, payloads, seed=cfg.seed)
