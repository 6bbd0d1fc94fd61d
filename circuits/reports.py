"""Standard investigations that produce typed results *and* save their figures (called by ``experiments``).

Each function takes a loaded model and an output directory, returns its typed results plus the paths
of the figures it wrote, and records nothing globally. The prompt sets are small, fixed and listed here
so numbers are reproducible; pass your own to study something else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .ablation import InductionProtocolResult, induction_protocol
from .attribution import AgreementReport, AttributionResult, attribution_agreement, attribution_patching
from .heads import HeadScores, head_scores
from .lens import LensResult, logit_lens
from .metrics import LogitDiff, single_token_ids
from .patching import PatchingResult, patching_sweep
from .plots import (plot_attribution_agreement, plot_head_scores, plot_induction_protocol, plot_lens, plot_lens_comparison,
                    plot_lens_table, plot_patching, save_figure)
from .tuned_lens import LensComparison, TunedLensTraining, compare_lenses, train_tuned_lens

__all__ = ["FACTUAL_PAIRS", "IOI_PAIRS", "factual_recall_batch", "ioi_batch", "induction_grid", "paris_logit_lens",
           "tuned_vs_logit_lens", "AttributionStudy", "attribution_vs_exact", "induction_study"]

# (subject, answer): clean "The capital of X is" -> answer; corrupt uses the next row's subject (single tokens)
FACTUAL_PAIRS = [(" France", " Paris"), (" Italy", " Rome"), (" Germany", " Berlin"), (" Spain", " Madrid"),
                 (" Japan", " Tokyo"), (" Russia", " Moscow"), (" Greece", " Athens"), (" Egypt", " Cairo")]
# (indirect object, subject): "When A and B went to the store, B gave a drink to" -> A; corrupt: "..., A gave ..." -> B
IOI_PAIRS = [(" Mary", " John"), (" Alice", " Bob"), (" Sarah", " Tom"), (" Emma", " James"), (" Anna", " David"),
             (" Paul", " Michael")]


def factual_recall_batch(model: Any, pairs: Sequence[tuple[str, str]] = FACTUAL_PAIRS):
    """Clean/corrupt prompts and a per-prompt logit-difference metric (correct capital minus the corrupt one's)."""
    clean = [f"The capital of{s} is" for s, _ in pairs]
    corrupt = [f"The capital of{pairs[(i + 1) % len(pairs)][0]} is" for i in range(len(pairs))]
    correct = single_token_ids(model, [a for _, a in pairs])
    wrong = single_token_ids(model, [pairs[(i + 1) % len(pairs)][1] for i in range(len(pairs))])
    return clean, corrupt, LogitDiff(correct, wrong)


def ioi_batch(model: Any, pairs: Sequence[tuple[str, str]] = IOI_PAIRS):
    """IOI prompts (Wang et al. 2022) with the repeated name swapped in the corrupt prompt (ABB -> ABA)."""
    t = "When{a} and{b} went to the store,{s} gave a drink to"
    clean = [t.format(a=a, b=b, s=b) for a, b in pairs]
    corrupt = [t.format(a=a, b=b, s=a) for a, b in pairs]
    return clean, corrupt, LogitDiff(single_token_ids(model, [a for a, _ in pairs]),
                                     single_token_ids(model, [b for _, b in pairs]))


def induction_grid(model: Any, out_dir: str | Path, *, n_seqs: int = 10, half: int = 50, seed: int = 0
                   ) -> tuple[HeadScores, list[Path]]:
    """Previous-token / duplicate / induction scores of every head, with the grids saved as PNG."""
    res = head_scores(model, n_seqs=n_seqs, half=half, seed=seed)
    out = Path(out_dir)
    paths = [save_figure(plot_head_scores(res, k), out / f"head_scores_{k}.png")
             for k in ("induction", "previous_token", "duplicate_token")]
    return res, paths


def paris_logit_lens(model: Any, out_dir: str | Path, prompt: str = "The capital of France is",
                     target: str = " Paris") -> tuple[LensResult, list[Path]]:
    """The logit lens on one factual prompt: per-layer target probability curve and the top-1 table."""
    res = logit_lens(model, prompt, targets=target, k=5)
    out = Path(out_dir)
    return res, [save_figure(plot_lens(res), out / "logit_lens_curve.png"),
                 save_figure(plot_lens_table(res, every=2), out / "logit_lens_table.png")]


def tuned_vs_logit_lens(model: Any, out_dir: str | Path, train_texts: Sequence[str], heldout_texts: Sequence[str], *,
                        steps: int = 60, batch_tokens: int = 48, lr: float = 1e-3, seed: int = 0,
                        max_tokens_per_text: int = 48, progress: bool = False
                        ) -> tuple[TunedLensTraining, LensComparison, list[Path]]:
    """Train a tuned lens on ``train_texts``, compare with the logit lens on ``heldout_texts``; save lens + figure."""
    tr = train_tuned_lens(model, train_texts, steps=steps, batch_tokens=batch_tokens, lr=lr, seed=seed,
                          max_tokens_per_text=max_tokens_per_text, progress=progress)
    cmp = compare_lenses(model, tr.lens, heldout_texts, seed=seed, max_tokens_per_text=max_tokens_per_text)
    out = Path(out_dir)
    tr.lens.save(out / "tuned_lens.safetensors")
    return tr, cmp, [save_figure(plot_lens_comparison(cmp), out / "tuned_vs_logit_lens.png")]


@dataclass
class AttributionStudy:
    name: str
    attribution: AttributionResult
    exact: PatchingResult
    report: AgreementReport
    figures: list[Path] = field(default_factory=list)


def attribution_vs_exact(model: Any, out_dir: str | Path, name: str, clean: Sequence[str], corrupt: Sequence[str],
                         metric: Any, *, k: int = 10, seed: int = 0, progress: bool = False) -> AttributionStudy:
    """AtP over heads against exact head patching (all positions, denoising), with the agreement report."""
    atp = attribution_patching(model, clean, corrupt, "head", metric=metric)
    exact = patching_sweep(model, clean, corrupt, "z", metric=metric, progress=progress)
    rep = attribution_agreement(atp, exact, k=k, seed=seed, label=name)
    out = Path(out_dir)
    figs = [save_figure(plot_attribution_agreement(atp, exact, rep), out / f"atp_vs_exact_{name}.png"),
            save_figure(plot_patching(exact), out / f"head_patching_{name}.png")]
    return AttributionStudy(name, atp, exact, rep, figs)


def induction_study(model: Any, out_dir: str | Path, **kw: Any) -> tuple[InductionProtocolResult, list[Path]]:
    """:func:`circuits.induction_protocol` with its figure."""
    res = induction_protocol(model, **kw)
    return res, [save_figure(plot_induction_protocol(res), Path(out_dir) / "induction_protocol.png")]


def write_summary(path: str | Path, data: dict) -> Path:
    """JSON summary (numbers with CIs) next to the figures."""
    from workbench.results import to_jsonable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=1))
    return path
