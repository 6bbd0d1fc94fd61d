"""Contrastive activation addition: layer x multiplier sweeps with the equal-norm random control.

CAA vectors (Rimsky et al. 2024; letter-balanced mean differences at the answer token) per
behaviour, each behaviour's layer selected on held-out pairs, steering on the tokens after the
instruction (:func:`steering.pipelines.run_caa_experiment`). Internal: the steering multiplier
along the CAA vector (and along a random direction of equal norm). Behavioural: p(answer matching
the behaviour) from the shared A/B scorer on held-out items. Cross-check per (behaviour,
multiplier) at each behaviour's selected layer: multiplier vs p(matching); expected positive. The
random control's effect should contain 0. Needs a chat template (the A/B items are chat turns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.layers import LayerSpec

from ..study import StudyResult, estimate_dict, skipped

__all__ = ["CAAStudy", "STEP", "compute", "run"]

STEP = "caa-sweep"
TITLE = "CAA steering: multiplier vs A/B behaviour"


@dataclass
class CAAStudy:
    """``[caa]``: CAA layer x multiplier sweeps.

    Attributes:
        enabled: run this study.
        behaviours: CAA behaviours (``workbench.datasets.caa_behaviours()``).
        layers: candidate steering layers (a layer spec; [0.2 .. 0.6] are layers 6, 9, 12, 15, 18 of 30).
        multipliers: steering multipliers of the raw mean difference.
        n_build: ``generate`` pairs the vector is built from.
        n_select: held-out ``generate`` pairs the layer is selected on.
        n_test: ``test`` items scored; 0: the whole test split.
    """

    enabled: bool = True
    behaviours: list[str] = field(default_factory=lambda: ["myopic-reward", "sycophancy"])
    layers: list[LayerSpec] = field(default_factory=lambda: [0.2, 0.3, 0.4, 0.5, 0.6])
    multipliers: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    n_build: int = 150
    n_select: int = 30
    n_test: int = field(default=0, metadata={"zero": "the whole test split"})


def compute(ctx: Any, m: Any, cfg: CAAStudy, *, seed: int = 0) -> StudyResult:
    import pandas as pd

    from steering.pipelines import run_caa_experiment
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layers

    if not m.facts.has_chat_template:
        return skipped(TITLE, "caa", f"{m.name} has no chat template, and the CAA items are chat turns")
    layers = resolve_layers(m, cfg.layers)
    exp = run_caa_experiment(m, cfg.behaviours, layers=layers, multipliers=cfg.multipliers, n_build=cfg.n_build,
                             n_select=cfg.n_select, n_test=cfg.n_test or None, seed=seed, progress=ctx.progress)
    sw = exp.sweep
    ms = sorted(sw.multipliers)
    units, xs, ys, metrics, rows = [], [], [], {}, []
    for b in cfg.behaviours:
        L = sw.best_layer(b)
        for mult in ms:
            e = sw.estimate(b, L, mult)
            units.append(f"{b} x{mult:+g}")
            xs.append(mult)
            ys.append(e.value)
            rows.append({"behaviour": b, "layer": L, "multiplier": mult, "p_matching": e.value, "ci_low": e.ci_low,
                         "ci_high": e.ci_high,
                         **({"random_p": sw.estimate(b, L, mult, "random").value} if sw.control else {})})
        metrics[f"{b}: selected layer"] = L
        metrics[f"{b}: effect x{max(cfg.multipliers):g} - x{min(cfg.multipliers):g}"] = estimate_dict(sw.effect(b, L))
        metrics[f"{b}: monotone in the multiplier"] = sw.is_monotone(b, L)
        if sw.control:
            metrics[f"{b}: random-control effect"] = estimate_dict(sw.effect(b, L, "random"))
    cc = CrossCheck.from_measurements(units, xs, ys, internal_name="steering multiplier",
                                      behavioural_name="p(matching)", unit_name="behaviour x multiplier",
                                      seed=seed, provenance=m.provenance(seed=seed, extra={"study": "caa"}))
    return StudyResult(
        TITLE,
        f"CAA vectors (Rimsky et al. 2024; letter-balanced mean differences at the answer token) for "
        f"{', '.join(cfg.behaviours)} at layers {layers}; each behaviour's layer is selected on held-out "
        "pairs; steering acts on the tokens after the instruction. Cross-check: multiplier (internal "
        "intervention) vs p(matching) (behaviour, shared A/B scorer); expected positive. The random "
        "direction of equal norm is the control.",
        "caa", cc, results={"caa_sweep": sw}, tables={"caa_best_layer": pd.DataFrame(rows)}, metrics=metrics)


def run(ctx: Any, m: Any, cfg: CAAStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
