"""SmolLM2 studies (slow): induction-score grid, tuned vs logit lens, attribution vs exact patching, ICL.

Run with ``pytest -m slow tests/circuits/test_smollm_studies.py -s`` (about 15-30 minutes on 2 CPU cores).
Figures and a JSON summary go to ``$CIRCUITS_FIGURES`` (default: pytest's tmp dir); the numbers are printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from circuits import (
    attribution_agreement,
    attribution_patching,
    compare_lenses,
    factual_recall_batch,
    head_scores,
    icl_score,
    induction_protocol,
    ioi_batch,
    logit_lens,
    patching_sweep,
    train_tuned_lens,
)
from circuits.text import PERSONA_HELDOUT_TRAITS, PERSONA_TRAIN_TRAITS, long_texts, persona_statement_texts
from workbench.results import plots_for, to_jsonable

pytestmark = [pytest.mark.slow, pytest.mark.smollm]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    d = os.environ.get("CIRCUITS_FIGURES")
    return Path(d) if d else tmp_path_factory.mktemp("circuits_figures")


def _fmt(e):
    return f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def save_figures(result, out_dir: Path, stem: str) -> list[Path]:
    """Every plot registered for the result's type, as ``<stem>_<plot>.png`` (the result contract)."""
    paths = []
    for name, plot in plots_for(result).items():
        paths.append(out_dir / f"{stem}_{name}.png")
        plot(result).savefig(paths[-1], dpi=150)
    return paths


def write_summary(path: Path, data: dict) -> Path:
    """JSON summary (numbers with CIs) next to the figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=1))
    return path


def test_induction_grid_all_heads(smollm, out_dir):
    res = head_scores(smollm, n_seqs=10, half=50)
    paths = save_figures(res, out_dir, "head_scores")
    s = res.get("induction", "target")
    assert s.shape == (30, 9) and bool(torch.isfinite(s).all())
    top = res.top("induction", 5)
    print("\nSmolLM2 top induction heads (layer, head, score):", [(a, b, round(c, 3)) for a, b, c in top])
    print("SmolLM2 top previous-token heads:", [(a, b, round(c, 3)) for a, b, c in res.top("previous_token", 5)])
    assert top[0][2] > 0.3 and all(p.exists() for p in paths)
    write_summary(out_dir / "induction_grid.json", {"top_induction": top, "top_previous": res.top("previous_token", 5),
                                                    "scores": s})


def test_paris_figure(smollm, out_dir):
    res = logit_lens(smollm, "The capital of France is", targets=" Paris", k=5)
    paths = save_figures(res, out_dir, "logit_lens")
    p = res.target_prob[:, 0, -1]
    print("\np(' Paris') at the last token per stage:", [round(float(x), 3) for x in p])
    assert float(p[-1]) > 0.1 and all(x.exists() for x in paths)


def test_tuned_lens_beats_logit_lens_heldout(smollm, shared_data, out_dir):
    train = persona_statement_texts(PERSONA_TRAIN_TRAITS, n_per_trait=40, data_dir=shared_data)
    heldout = persona_statement_texts(PERSONA_HELDOUT_TRAITS, n_per_trait=20, seed=1, data_dir=shared_data)
    assert not set(train) & set(heldout)
    tr = train_tuned_lens(smollm, train, steps=60, batch_tokens=48, lr=1e-3, seed=0, max_tokens_per_text=48)
    cmp = compare_lenses(smollm, tr.lens, heldout, seed=0, max_tokens_per_text=48)
    tr.lens.save(out_dir / "tuned_lens.safetensors")
    save_figures(cmp, out_dir, "tuned_vs_logit_lens")
    rows = [(s, round(cmp.kl_logit[i].value, 3), round(cmp.kl_tuned[i].value, 3), _fmt(cmp.kl_diff[i]))
            for i, s in enumerate(cmp.stages)]
    print("\nheld-out KL per stage (stage, logit, tuned, tuned-logit [95% CI]):")
    for r in rows:
        print("  ", r)
    write_summary(out_dir / "tuned_lens.json", {"rows": rows, "n_texts": cmp.n_texts, "n_tokens": cmp.n_tokens,
                                                "train_seconds": tr.seconds})
    assert all(cmp.kl_tuned[i].value < cmp.kl_logit[i].value for i in range(len(cmp.stages) - 1))
    assert cmp.tuned_better_everywhere()


@pytest.mark.parametrize("task", ["factual", "ioi"])
def test_attribution_agreement_with_exact_patching(smollm, out_dir, task):
    clean, corrupt, metric = (factual_recall_batch if task == "factual" else ioi_batch)(smollm)
    atp = attribution_patching(smollm, clean, corrupt, "head", metric=metric)
    exact = patching_sweep(smollm, clean, corrupt, "z", metric=metric)
    rep = attribution_agreement(atp, exact, k=10, seed=0, label=task)
    paths = save_figures(rep, out_dir, f"atp_vs_exact_{task}") + save_figures(exact, out_dir, f"head_patching_{task}")
    assert rep.attribution is atp and rep.exact is exact and all(p.exists() for p in paths)
    print(f"\n{task}: clean logit diff {float(exact.clean_value.mean()):.3f}, corrupt "
          f"{float(exact.corrupt_value.mean()):.3f}; {rep.summary()}; exact top heads {rep.exact_top[:5]}; "
          f"exact patching {exact.seconds:.1f} s, AtP {atp.seconds:.1f} s")
    write_summary(out_dir / f"attribution_{task}.json", {"spearman": rep.spearman, "recall": rep.recall_at_k,
                                                         "exact_top": rep.exact_top, "atp_top": rep.attribution_top})
    assert rep.n_nodes == 270 and rep.spearman.value > 0


def test_icl_score_and_protocol(smollm, shared_data, out_dir):
    texts = long_texts(smollm, 6, 520, data_dir=shared_data)  # icl_score needs late + window + 1 = 506 tokens
    icl = icl_score(smollm, texts, early=50, late=500, window=5)
    print(f"\nSmolLM2 ICL score (loss at token 500 - token 50, +-5 token window, {len(texts)} HH-RLHF texts): "
          f"{_fmt(icl.estimate)}")
    assert icl.estimate.value < 0
    res = induction_protocol(smollm, k_percent=2, n_random=5, n_seqs=10, half=50, icl_texts=texts[:3], icl_early=50,
                             icl_late=500)
    print("SmolLM2 induction protocol:", res.summary())
    write_summary(out_dir / "induction_protocol_smollm.json", {"icl": icl.estimate, "summary": res.summary()})
    assert res.heads_per_layer == 1 and len(res.targeted) == 30
