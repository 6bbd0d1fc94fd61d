"""Tuned lens: identity start equals the logit lens, training lowers held-out KL, safetensors round trip."""

from __future__ import annotations

import pytest
import torch

from circuits import TunedLens, compare_lenses, logit_lens, train_tuned_lens

TEXTS = [f"the {a} {b} sat on the {c} mat {i}" for i, (a, b, c) in enumerate(
    [(x, y, z) for x in ("red", "big", "old", "shy") for y in ("cat", "dog", "fox") for z in ("green", "blue", "flat")])]


def test_identity_lens_is_the_logit_lens(tiny_model):
    model = tiny_model("llama", "tl")
    lens = TunedLens.identity(model)
    a = lens(model, ["hello there", "abc"])
    b = logit_lens(model, ["hello there", "abc"])
    m = a.mask
    assert torch.allclose(a.kl[:, m], b.kl[:, m], atol=1e-6) and a.lens == "tuned"


def test_training_lowers_heldout_kl_and_round_trips(tiny_model, tmp_path):
    model = tiny_model("gpt2", "tl")
    train, heldout = TEXTS[:28], TEXTS[28:]
    tr = train_tuned_lens(model, train, steps=60, batch_tokens=64, lr=3e-3, eval_every=5, seed=0)
    # model selection keeps the logit lens when training does not help on validation: never worse there
    assert all(t <= l + 1e-9 for t, l in zip(tr.val_kl_tuned[:-1], tr.val_kl_logit[:-1]))
    assert tr.val_kl_tuned[0] < 0.9 * tr.val_kl_logit[0]
    cmp = compare_lenses(model, tr.lens, heldout)
    assert cmp.kl_tuned[0].value < cmp.kl_logit[0].value
    assert cmp.kl_diff[0].ci_high < 0  # paired difference over held-out texts excludes zero at the embeddings
    df = cmp.to_dataframe()
    assert set(df["lens"]) == {"logit", "tuned"} and (df["kl_ci_low"] <= df["kl"] + 1e-12).all()
    better = sum(cmp.kl_diff[s].ci_high < 0 for s in range(len(cmp.stages) - 1))
    assert f"KL lower at {better}," in cmp.summary() and better >= 1
    assert tr.summary().startswith("tuned lens trained for 60 steps") and f"of {model.n_layers + 1} stages" in tr.summary()
    path = tr.lens.save(tmp_path / "lens.safetensors")
    back = TunedLens.load(path, model)
    assert torch.equal(back.A, tr.lens.A) and back.meta["steps"] == 60
    other = tiny_model("llama", "tl")
    with pytest.raises(ValueError, match="trained on weights|width"):
        TunedLens.load(path, other)
    assert tr.to_dataframe().shape[0] == model.n_layers + 1
