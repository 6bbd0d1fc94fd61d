"""Steering: push a model along a direction and measure what changes.

Vectors (CAA, contrastive mean differences, PCA, probe directions, the refusal direction,
persona vectors) are :class:`SteeringVector` objects (safetensors + JSON on disk); operators
(:class:`Add`, :class:`Ablate`, :class:`Clamp`) apply them through either backend of a
:class:`~workbench.models.HookedModel` with an explicit position policy. See ``AGENTS.md`` for
the file map and the module docstrings for the protocols (Rimsky et al. 2024; Turner et al.
2023; Chen et al. 2025; Arditi et al. 2024; Persona Non Grata).

Importing this package loads no model, data, pandas or matplotlib.
"""

from __future__ import annotations

from .aggregators import AGGREGATORS, mean_difference, pca_difference
from .build import build_caa_vectors, contrastive_vectors, diff_in_means, pca_vectors, probe_vector
from .layer_matching import LayerError, resolve_layers
from .operators import Ablate, Add, Clamp, SteeringError, interventions_for, steer
from .record import PromptItem, record_activations
from .vector import SteeringVector

__all__ = [
    "SteeringVector", "Add", "Ablate", "Clamp", "steer", "interventions_for", "SteeringError", "LayerError",
    "resolve_layers", "record_activations", "PromptItem", "AGGREGATORS", "mean_difference", "pca_difference",
    "contrastive_vectors", "build_caa_vectors", "pca_vectors", "diff_in_means", "probe_vector",
]
