"""How a layer sweep chooses the layer a probe is read at (:meth:`probe.sweep.LayerSweepResult.choose_layer`): the
rule, its per-layer numbers, and the continuous tie-break (never the layer index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerChoice"]


@dataclass
class LayerChoice:
    """Which layer a probe should be read at, and why (:meth:`LayerSweepResult.choose_layer`).

    The rule: the highest AUROC on the selection set (the transfer set when one is given, else
    held-out templates, else the main test split); exact ties (several layers at AUROC 1.00 are
    common) go to the lowest log-loss of that set's decision values (logistic probes; for other
    methods the highest standardised mean margin), never to the layer index.

    Attributes:
        layer: the chosen layer. method: the probe method. selection_set: ``"transfer"``,
            ``"held_out_templates"`` or ``"main"``. tiebreak: the continuous criterion's name.
        layers, auroc, tiebreak_value: per layer, the numbers the rule compared.
        tied: layers tied on AUROC at the top.
    """

    layer: int
    method: str
    selection_set: str
    tiebreak: str
    layers: list[int]
    auroc: list[float]
    tiebreak_value: list[float]
    tied: list[int]

    @property
    def rule(self) -> str:
        lower = "lower" if self.tiebreak == "log_loss" else "higher"
        return (f"highest {self.selection_set.replace('_', ' ')} AUROC of the {self.method} probe; exact ties broken "
                f"by {lower} {self.tiebreak.replace('_', ' ')} on that set (not by layer index)")

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({"layer": self.layers, "selection_set": self.selection_set,
                             f"{self.selection_set}_auroc": self.auroc, self.tiebreak: self.tiebreak_value,
                             "tied_at_top": [L in self.tied for L in self.layers],
                             "chosen": [L == self.layer for L in self.layers]})

    def summary(self) -> str:
        i = self.layers.index(self.layer)
        s = (f"layer {self.layer} chosen: {self.rule}; {self.selection_set} AUROC {self.auroc[i]:.3f}, "
             f"{self.tiebreak} {self.tiebreak_value[i]:.4g}")
        if len(self.tied) > 1:
            s += f" ({len(self.tied)} layers tied on AUROC: {self.tied[:8]}{'...' if len(self.tied) > 8 else ''})"
        return s


def _tiebreak(dec: np.ndarray, y: np.ndarray, method: str) -> tuple[str, float]:
    """The continuous selection criterion of binary decision values: mean log-loss for a logistic
    probe (its decisions are logits), else the mean margin ``(2y-1) * dec / std(dec)`` negated
    (so lower is better for both)."""
    dec = np.asarray(dec, float)
    if method == "logistic":
        return "log_loss", float(np.mean(np.logaddexp(0.0, -(2 * y - 1) * dec)))
    sd = dec.std() or 1.0
    return "neg_std_margin", float(-np.mean((2 * y - 1) * dec) / sd)
