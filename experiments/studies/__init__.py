"""Studies: one module per study, each pairing an internal measurement with a behavioural one.

A study module holds, and is the only home of:

- its config dataclass (``<Name>Study``): every parameter of the study, declared once with its one
  default (the study's full size) and documented; it is the study's TOML section wherever an
  experiment composes it (``[eval_awareness]``, ``[personas]``, ...). Layers are layer specs
  (:mod:`workbench.layers`: fractions of depth, ``"middle"``, ``"all"``, ints), never SmolLM2
  numbers. An experiment that needs other sizes names them in a preset (``PRESETS`` in its module);
- ``STEP``, the step name it writes by default;
- ``compute(ctx, model, cfg, *, seed) -> StudyResult``: the work (it calls circuits, probe, steering
  and the shared scorers; the analysis code itself lives in those packages) and the cross-check;
- ``run(ctx, model, cfg, *, seed, step=STEP) -> dict``: ``compute`` as one resumable step of the run,
  written by :meth:`experiments.writer.StepWriter.study` (tables, figures, the report section).

Experiments (``experiments/builtin/<name>.py``) compose studies; see ``experiments/AGENTS.md``.
Importing this package imports no study (each module is imported where it is used).
"""

__all__ = ["STUDIES"]

#: the study modules, by module name (``experiments.studies.<name>``)
STUDIES = ("logit_lens", "patching", "induction", "induction_protocol", "eval_awareness", "eval_awareness_shared",
           "personas", "persona_asr", "caa", "preference")
