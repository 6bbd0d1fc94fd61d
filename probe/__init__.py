"""probe: what does the model represent, and where?

Labelled prompt sets -> activations at an explicit read position -> linear probes at every
layer (batched on CPU or GPU) with controls -> typed results with confidence intervals,
plots, and probe directions exported for steering. Evaluation awareness (Nguyen et al. 2025;
Probe-Rewrite-Evaluate) and preference dimensions (MRMBench, AAAI 2026) are built on top.

Importing ``probe`` is light: names are loaded from their modules on first use.
See ``probe/AGENTS.md`` for the file map.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "datasets": ["Example", "LabelledPromptSet", "DatasetError", "READ_POSITIONS", "load_contrastive",
                 "load_ab_test_deploy", "load_framing", "load_prompt_list", "load_mrm", "load_caa_file", "load_persona",
                 "load_preference_pairs", "load_dataset"],
    "activations": ["Activations", "collect", "collect_cached", "collect_to_store"],
    "splits": ["train_test_split", "group_kfold", "SplitError"],
    "probes": ["LinearProbe", "fit_logistic", "fit_mean_diff"],
    "batched": ["fit_logistic_batched", "BatchedFit", "ProbeFitError"],
    "features": ["TensorFeatures", "StoreFeatures", "as_features"],
    "metrics": ["auroc_estimate", "accuracy_estimate", "macro_auroc_estimate", "paired_difference",
                "mean_auroc_estimate", "analytic_auroc_gaussian"],
    "sweep": ["layer_sweep", "LayerSweepResult", "LayerScore", "LayerChoice"],
    "surface": ["surface_baseline", "surface_features", "SurfaceBaselineResult", "beats"],
    "controls": ["token_artifact_control", "TokenArtifactResult", "artifact_effect"],
    "eval_awareness": ["eval_awareness_probe", "EvalAwarenessResult", "score_prompts", "PromptScores",
                       "rewrite_to_deploy", "rewrite_pairs", "RewritePair", "framing_shift", "FramingShiftResult",
                       "framing_set", "build_framing_records", "layer_transfer", "LayerTransferResult"],
    "preference": ["preference_probes", "PreferenceProbeResult", "build_preference_set", "preference_records",
                   "DIMENSIONS", "export_preference_sets"],
    "directions": ["to_direction_set", "probes_to_direction_set"],
    "plots": ["plot_layer_sweep", "plot_token_artifact", "plot_eval_awareness", "plot_prompt_scores",
              "plot_framing_shift", "plot_preference", "plot_layer_transfer", "plot_surface_baseline"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
#: Old names served with a DeprecationWarning by their module (``load_caa`` had a second meaning in steering).
_RENAMED = {"load_caa": "datasets"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None and name in _RENAMED:
        return getattr(importlib.import_module(f".{_RENAMED[name]}", __name__), name)
    if mod is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
