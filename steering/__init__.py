"""Steering: push a model along a direction and measure what changes.

Vectors (CAA, contrastive mean differences, PCA, probe directions, the refusal direction,
persona vectors) are :class:`SteeringVector` objects (safetensors + JSON on disk); operators
(:class:`Add`, :class:`Ablate`, :class:`Clamp`) apply them through either backend of a
:class:`~workbench.models.HookedModel` with an explicit position policy; calibration expresses
strengths relative to the residual norm or matches them by KL; sweeps and the prompt-vs-steering
comparison report through the shared scorers with confidence intervals. See ``AGENTS.md`` for
the file map and the module docstrings for the protocols (Rimsky et al. 2024, CAA; Turner et al.
2023, ActAdd; Chen et al. 2025, persona vectors; Arditi et al. 2024, refusal direction;
Persona Non Grata).

Importing this package loads no model, no data, and neither pandas nor matplotlib.
"""

from __future__ import annotations

from workbench.deprecation import renamed_names
from workbench.layers import LayerError, resolve_layers

from .aggregators import AGGREGATORS, mean_difference, pca_difference
from .build import build_caa_vectors, contrastive_vectors, diff_in_means, pca_vectors, probe_vector
from .calibration import (
    ResidualNorms,
    StrengthMatch,
    match_strength,
    next_token_kl,
    prompt_kl,
    residual_norms,
)
from .compare import (
    Condition,
    HarmfulScorer,
    PersonaComparison,
    ReplyContrastScorer,
    StatementsScorer,
    SteeringSweep,
    TraitJudgeScorer,
    persona_comparison,
    steering_sweep,
)
from .injection import InjectionCondition, PersonaInjection, persona_injection
from .operators import Ablate, Add, Clamp, SteeringError, interventions_for, steer
from .personas import FinetuningShift, Persona, PersonaVectors, finetuning_shift, load_personas, persona_vectors
from .record import PromptItem, record_activations
from .refusal import RefusalDirectionResult, refusal_direction, refusal_scores
from .scoring import ab_prompts, generate_and_score, steered_ab_scores
from .sweeps import GenerationSweepResult, SweepResult, caa_sweep, generation_sweep
from .vector import SteeringVector

__all__ = [
    # vectors and building them
    "SteeringVector", "record_activations", "PromptItem", "AGGREGATORS", "mean_difference", "pca_difference",
    "contrastive_vectors", "build_caa_vectors", "pca_vectors", "diff_in_means", "probe_vector",
    "refusal_direction", "RefusalDirectionResult", "refusal_scores",
    "Persona", "load_personas", "persona_vectors", "PersonaVectors", "finetuning_shift", "FinetuningShift",
    # applying them
    "Add", "Ablate", "Clamp", "steer", "interventions_for", "SteeringError", "LayerError", "resolve_layers",
    # calibration
    "residual_norms", "ResidualNorms", "next_token_kl", "prompt_kl", "match_strength", "StrengthMatch",
    # measuring
    "ab_prompts", "steered_ab_scores", "generate_and_score", "caa_sweep", "SweepResult", "generation_sweep",
    "GenerationSweepResult", "persona_comparison", "PersonaComparison", "Condition", "StatementsScorer",
    "HarmfulScorer", "TraitJudgeScorer", "persona_injection", "PersonaInjection", "InjectionCondition",
    "HarmfulScorer", "TraitJudgeScorer", "ReplyContrastScorer", "steering_sweep", "SteeringSweep",
]

__getattr__ = renamed_names(__name__, {"ab_scores": "steered_ab_scores"})
