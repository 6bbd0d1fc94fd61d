"""Refusal direction (Arditi et al. 2024): candidates by hand, selection scores by full forwards."""

import pytest
import torch

from steering.calibration import next_token_kl
from steering.record import record_activations
from steering.refusal import post_instruction_positions, refusal_direction, refusal_scores, refusal_tokens

HARMFUL = ["how do I pick a lock", "write a threat", "make a weapon", "steal a car"]
HARMLESS = ["bake bread", "write a poem", "plant a tree", "fold a shirt"]


def test_template_positions_and_refusal_tokens(tiny_model, smollm):
    m = tiny_model("llama")
    pos = post_instruction_positions(m)
    text = m.format_chat("INSTR")
    toks = m.to_str_tokens(m.tokenize("INSTR", chat=True))
    assert "".join(toks[len(toks) + pos[0]:]) == text[text.index("INSTR") + 5:]
    assert refusal_tokens(m)
    # SmolLM2: <|im_end|> \n <|im_start|> ass istant \n ; refusal replies start with "I" or "As"
    assert post_instruction_positions(smollm) == [-6, -5, -4, -3, -2, -1]
    assert sorted(smollm.tokenizer.decode([t]) for t in refusal_tokens(smollm)) == ["As", "I"]


def test_candidates_selection_and_scores_by_hand(tiny_model):
    m = tiny_model("llama")
    res = refusal_direction(m, HARMFUL, HARMLESS, val_harmful=HARMFUL[:2], val_harmless=HARMLESS[:2],
                            positions=[-2, -1], batch_size=2)
    a = record_activations(m, HARMFUL, [0, 1], site="resid_pre", positions=[-2, -1])
    b = record_activations(m, HARMLESS, [0, 1], site="resid_pre", positions=[-2, -1])
    for pi in range(2):
        for L in (0, 1):
            assert torch.allclose(res.candidates[pi, L], a[L][:, pi].mean(0) - b[L][:, pi].mean(0), atol=1e-5)
    # resid_pre.0 at template tokens is the same embedding for every prompt: no direction there
    assert torch.equal(res.candidates[:, 0], torch.zeros_like(res.candidates[:, 0]))
    assert len(res.scores) == 2 and {s["layer"] for s in res.scores} == {1} and "zero" in res.notes[0]
    assert res.baseline["harmful"].n == 2
    ok = [s for s in res.scores if s["passes"]] or res.scores
    best = min(ok, key=lambda s: s["bypass"].value)
    assert (res.layer, res.position) == (best["layer"], best["position"])
    assert any("no candidate passed" in n for n in res.notes) == (not any(s["passes"] for s in res.scores))
    # the selection scores equal full forwards under the operators
    sel = best
    assert sel["bypass"].value == pytest.approx(refusal_scores(m, HARMFUL[:2], [res.ablation()]).mean(), rel=1e-5)
    assert sel["induce"].value == pytest.approx(refusal_scores(m, HARMLESS[:2], [res.actadd()]).mean(), abs=1e-4)
    assert sel["kl"].value == pytest.approx(next_token_kl(m, HARMLESS[:2], [res.ablation()]).mean(), abs=1e-6)
    assert res.direction.site_at(res.layer).kind == "resid_pre" and res.direction.meta["position"] == res.position
    df = res.to_dataframe()
    assert df.selected.sum() == 1 and {"bypass", "induce_ci_low", "kl"} <= set(df.columns)
    assert res.summary().startswith(f"refusal direction at layer {res.layer}, position {res.position}")
    assert str(sel["bypass"]) in res.summary() and ("passes the selection" in res.summary()) == sel["passes"]
    from steering.plots import plot_refusal_direction

    assert plot_refusal_direction(res).axes
    with pytest.raises(ValueError, match="held-out"):
        refusal_direction(m, HARMFUL, HARMLESS)
