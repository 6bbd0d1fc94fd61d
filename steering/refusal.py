"""The refusal direction (Arditi et al. 2024, "Refusal in Language Models Is Mediated by a Single
Direction").

1. Candidates: for each layer ``l`` and each post-instruction position ``i`` (the chat-template
   tokens after the user's instruction), the difference in means of ``resid_pre.l`` at ``i``
   between harmful and harmless instructions.
2. Refusal score of a prompt: the log-odds of the next-token probability mass on refusal tokens
   (the first tokens of the refusal phrases: "I" of "I'm sorry"/"I cannot", "As" of "As an AI"...):
   ``log p - log(1 - p)``.
3. Selection on held-out instructions: ``bypass`` = mean refusal score on harmful prompts with
   the direction ablated everywhere (directional ablation, lower is better); ``induce`` = mean
   refusal score on harmless prompts with the candidate added at its layer (must be > 0);
   ``kl`` = mean next-token KL on harmless prompts under ablation (must be < 0.1); and the layer
   must be below 80% of the depth. The candidate with the lowest ``bypass`` among those passing
   is selected (if none passes, the lowest ``bypass`` overall, with a note).

Each score is an :class:`~workbench.stats.Estimate` (mean over prompts, bootstrap CI). On
SmolLM2-135M-Instruct, whose safety tuning is weak, refusal scores of harmful prompts are
already low; read the baseline in ``result.baseline`` before trusting a selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from workbench.layers import resolve_layers
from workbench.results import Provenance, data_hash
from workbench.sites import Site
from workbench.stats import mean_estimate

from .calibration import _last_logits, kl_divergence
from .fastpath import ResidualReplay
from .operators import Ablate, Add
from .record import normalize_items, record_activations
from .vector import SteeringVector

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["RefusalDirectionResult", "refusal_direction", "refusal_tokens", "refusal_scores",
           "post_instruction_positions"]

_SENTINEL = "\u2063INSTRUCTION\u2063"


def post_instruction_positions(model: Model) -> list[int]:
    """Negative indices of the chat-template tokens after the user's instruction (e.g. SmolLM2's
    ``<|im_end|> \\n <|im_start|> assistant \\n``)."""
    text = model.format_chat(_SENTINEL)
    suffix = text[text.index(_SENTINEL) + len(_SENTINEL):]
    n = len(model.tokenizer(suffix, add_special_tokens=False)["input_ids"])
    if n == 0:
        raise ValueError(f"{model.name}'s chat template adds nothing after the instruction; pass positions=")
    return list(range(-n, 0))


def refusal_tokens(model: Model, phrases: Sequence[str] | None = None) -> list[int]:
    """First tokens of the assistant's reply for each refusal phrase (default: the shared list)."""
    from workbench.scorers import REFUSAL_PHRASES

    phrases = list(REFUSAL_PHRASES if phrases is None else phrases)
    prefix = model.format_chat("x")
    pre = model.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    out = []
    for ph in phrases:
        ids = model.tokenizer(prefix + ph, add_special_tokens=False)["input_ids"]
        if ids[:len(pre)] == pre and len(ids) > len(pre):
            out.append(ids[len(pre)])
    return sorted(set(out))


def _refusal_score(logits: torch.Tensor, toks: torch.Tensor) -> np.ndarray:
    lp = torch.log_softmax(logits.double(), -1)
    lpr = torch.logsumexp(lp[:, torch.as_tensor(toks, device=lp.device)], -1)
    return (lpr - torch.log1p(-lpr.exp().clamp(max=1 - 1e-12))).cpu().numpy()


def refusal_scores(model: Model, prompts: Sequence[str], operators: Sequence[Any] = (), *,
                   tokens: Sequence[int] | None = None, batch_size: int = 16) -> np.ndarray:
    """Per prompt refusal log-odds at the first response token under ``operators``."""
    toks = torch.tensor(list(tokens) if tokens is not None else refusal_tokens(model))
    return _refusal_score(_logits(model, prompts, operators, batch_size), toks)


def _logits(model: Model, prompts: Sequence[str], operators: Sequence[Any], batch_size: int) -> torch.Tensor:
    """Last-token logits of the chat-formatted prompts under ``operators`` (input order)."""
    return _last_logits(model, normalize_items(list(prompts)), chat=True, batch_size=batch_size, operators=operators)


@dataclass
class RefusalDirectionResult:
    """Candidate refusal directions, their selection scores, and the selected direction.

    Attributes:
        direction: the selected direction as a SteeringVector at ``resid_pre.<layer>``
            (the raw difference in means; ``ablation()`` uses its unit direction).
        layer, position: where it was read (position as a negative index into the prompt).
        candidates: ``[n_positions, n_layers, d_model]`` differences in means.
        layers, positions: the candidate grid.
        scores: one dict per candidate (position, layer, bypass/induce/kl Estimates, passes, reason);
            empty when ``select=False``.
        baseline: refusal-score Estimates of the unsteered model on the harmful and harmless
            selection prompts.
        tokens: the refusal token ids.
        notes: anything a reader must know (fallback selection...).
    """

    direction: SteeringVector
    layer: int
    position: int
    candidates: torch.Tensor
    layers: list[int]
    positions: list[int]
    scores: list[dict] = field(default_factory=list)
    baseline: dict = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)

    def ablation(self, **kw: Any) -> Ablate:
        """Directional ablation of the selected direction at every layer and position."""
        return self.direction.ablation(self.layer, **kw)

    def actadd(self, alpha: float = 1.0, positions: Any = "all") -> Add:
        """Activation addition of the selected direction at its layer (``alpha=1``: the raw difference)."""
        return self.direction.at(self.layer, alpha, positions=positions)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for s in self.scores:
            row = {"position": s["position"], "layer": s["layer"], "passes": s["passes"], "reason": s["reason"],
                   "selected": s["layer"] == self.layer and s["position"] == self.position}
            for k in ("bypass", "induce", "kl"):
                e = s[k]
                row.update({k: e.value, f"{k}_ci_low": e.ci_low, f"{k}_ci_high": e.ci_high})
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The selected direction, the selection filters it passed, and its scores."""
        head = (f"refusal direction at layer {self.layer}, position {self.position} (of {len(self.layers)} layers x "
                f"{len(self.positions)} positions)")
        sel = next((s for s in self.scores if s["layer"] == self.layer and s["position"] == self.position), None)
        if sel is not None:
            head += (f": {'passes the selection filters' if sel['passes'] else 'fails the filters (' + str(sel['reason']) + ')'}"
                     f"; ablation refusal score {sel['bypass']}, addition {sel['induce']}, KL {sel['kl']}")
        if self.baseline:
            head += "; unsteered: " + ", ".join(f"{k} {v}" for k, v in self.baseline.items())
        return head + "".join(f"; note: {n}" for n in self.notes)


def refusal_direction(model: Model, harmful: Sequence[str], harmless: Sequence[str], *,
                      val_harmful: Sequence[str] | None = None, val_harmless: Sequence[str] | None = None,
                      layers: Any = None, positions: Sequence[int] | None = None,
                      tokens: Sequence[int] | None = None, select: bool = True,
                      max_layer_fraction: float = 0.8, kl_threshold: float = 0.1, induce_threshold: float = 0.0,
                      batch_size: int = 16, seed: int = 0, progress: bool = False) -> RefusalDirectionResult:
    """Candidate refusal directions and the selected one (see the module docstring).

    Args:
        harmful, harmless: instructions to take the difference in means over (chat template, no
            system prompt). The harmless set may be the Alpaca split from the shared folder
            (:func:`steering.data.load_harmless`), which must not be copied into the repository.
        val_harmful, val_harmless: held-out instructions for the selection scores (required when
            ``select``).
        layers: candidate layers (default: all); positions: negative prompt indices (default:
            the post-instruction template tokens).
        tokens: refusal token ids (default: :func:`refusal_tokens`).
    """
    layers = resolve_layers(model, layers)
    positions = list(positions) if positions is not None else post_instruction_positions(model)
    toks = list(tokens) if tokens is not None else refusal_tokens(model)
    if not toks:
        raise ValueError("no refusal tokens: pass tokens=")
    kw = dict(site="resid_pre", positions=positions, chat=True, batch_size=batch_size, progress=progress)
    a = record_activations(model, list(harmful), layers, **kw)
    b = record_activations(model, list(harmless), layers, **kw)
    cand = torch.stack([a[L].mean(0) - b[L].mean(0) for L in layers], dim=1)  # [P, L, d]
    notes: list[str] = []
    scores: list[dict] = []
    baseline: dict = {}
    tok_t = torch.tensor(toks)
    if select:
        if not val_harmful or not val_harmless:
            raise ValueError("selection needs held-out val_harmful and val_harmless instructions (or select=False)")
        base_h = _logits(model, val_harmful, (), batch_size)
        base_n = _logits(model, val_harmless, (), batch_size)
        baseline = {"harmful": mean_estimate(_refusal_score(base_h, tok_t), seed=seed, statistic="refusal_score"),
                    "harmless": mean_estimate(_refusal_score(base_n, tok_t), seed=seed, statistic="refusal_score")}
        grid = [(pi, li) for pi in range(len(positions)) for li in range(len(layers))]
        if progress:
            from tqdm.auto import tqdm

            grid = tqdm(grid, desc="refusal direction selection", unit="candidate")
        replays: dict[int, ResidualReplay] = {}
        zero = []
        for pi, li in grid:
            L, r = layers[li], cand[pi, li]
            if float(r.norm()) == 0:
                zero.append(f"resid_pre.{L}@{positions[pi]}")
                continue
            abl = Ablate(r)
            bypass = _refusal_score(_logits(model, val_harmful, [abl], batch_size), tok_t)
            abl_n = _logits(model, val_harmless, [abl], batch_size)
            if L not in replays:
                replays[L] = ResidualReplay(model, list(val_harmless), Site("resid_pre", L), positions="all",
                                            batch_size=batch_size)
            induce = _refusal_score(replays[L].last_logits(r), tok_t)
            kl = kl_divergence(base_n, abl_n)
            e_b, e_i, e_k = (mean_estimate(x, seed=seed, statistic=n) for x, n in ((bypass, "bypass_score"),
                                                                     (induce, "induce_score"), (kl, "kl_score")))
            reasons = []
            if L >= max_layer_fraction * model.n_layers:
                reasons.append(f"layer >= {max_layer_fraction:g} * n_layers")
            if e_i.value <= induce_threshold:
                reasons.append(f"induce <= {induce_threshold:g}")
            if e_k.value >= kl_threshold:
                reasons.append(f"kl >= {kl_threshold:g}")
            scores.append({"position": positions[pi], "layer": L, "bypass": e_b, "induce": e_i, "kl": e_k,
                           "passes": not reasons, "reason": "; ".join(reasons)})
        if zero:
            notes.append(f"{len(zero)} candidate(s) with zero difference in means skipped ({', '.join(zero[:6])}): "
                         "the same tokens with no earlier context to differ (e.g. resid_pre.0)")
        if not scores:
            raise ValueError("every candidate direction is zero: choose later layers")
        ok = [s for s in scores if s["passes"]]
        if ok:
            best = min(ok, key=lambda s: s["bypass"].value)
        else:
            best = min(scores, key=lambda s: s["bypass"].value)
            notes.append("no candidate passed the filters (induce > 0, kl < threshold, layer < 80% depth): "
                         "selected the lowest bypass score overall")
        L_sel, p_sel = best["layer"], best["position"]
    else:
        L_sel, p_sel = layers[len(layers) // 2], positions[-1]
        notes.append("select=False: the middle candidate layer at the last post-instruction position")
    vec = cand[positions.index(p_sel), layers.index(L_sel)]
    dh = data_hash(list(harmful), list(harmless), list(val_harmful or []), list(val_harmless or []))
    prov = model.provenance(data_hash=dh, seed=seed, sites=(f"resid_pre.{L_sel}",),
                            extra={"refusal_tokens": toks, "positions": positions, "layers": layers})
    direction = SteeringVector({Site("resid_pre", L_sel): vec}, "refusal_direction", prov,
                               {"name": "refusal", "position": p_sel, "n_harmful": len(harmful),
                                "n_harmless": len(harmless),
                                "protocol": "difference in means, Arditi et al. 2024"})
    return RefusalDirectionResult(direction, L_sel, p_sel, cand, layers, positions, scores, baseline, toks, notes, prov)
