"""The training script is seeded and deterministic; the shipped weights reproduce from it (slow)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from circuits import induction_model_dir, induction_model_info
from circuits.train_induction import induction_targets, make_batch, train


def test_data_has_repeats_at_random_offsets():
    gen = torch.Generator().manual_seed(0)
    x = make_batch(gen, 64, 64)
    assert x.shape == (64, 64) and bool((x[:, 0] == 256).all()) and int(x[:, 1:].max()) < 256
    offsets, starts = set(), set()
    for row in x[:, 1:]:
        # find a repeated segment: the shift with the longest match between the row and a shifted copy
        best = max(range(1, 63), key=lambda d: int((row[d:] == row[:-d]).sum()))
        offsets.add(best)
        match = (row[best:] == row[:-best]).int()
        starts.add(best + int(match.argmax()))  # where (a) second copy begins
    assert len(offsets) > 10  # the distance between copies varies: no positional shortcut
    assert len(starts) > 10  # and so does where the second copy begins
    # a dense signal: a large share of tokens are second occurrences, predictable only by induction
    tgt, has = induction_targets(x)
    hit = has[:, :-1] & (x.gather(1, tgt)[:, :-1] == x[:, 1:])  # next token = the token after the earlier occurrence
    assert float(hit.float().mean()) > 0.3


def test_seeded_and_deterministic(tmp_path):
    kw = dict(seed=3, steps=12, batch=8, seq_len=32, plant_steps=5, progress=False, circuits_eval=False)
    threads = torch.get_num_threads()
    a = train(tmp_path / "a", **kw)
    b = train(tmp_path / "b", **kw)
    assert torch.get_num_threads() == threads  # train() restores the caller's settings
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["log"] == b["log"]
    assert all(float(v.abs().sum()) == 0 for k, v in wa.items() if ".mlp." in k)  # attention-only


@pytest.mark.slow
def test_shipped_weights_reproduce(tmp_path):
    """Re-run the recorded command; compare with the shipped weights (about 3 minutes on 1 CPU thread)."""
    info = induction_model_info()
    out = tmp_path / "repro"
    train(out, seed=info["seed"], steps=info["steps"], batch=info["batch"], lr=info["lr"], warmup=info["warmup"],
          threads=info["threads"], seq_len=info["seq_len"], plant_steps=info["plant_steps"],
          plant_lr=info["plant_lr"], weight_decay=info["weight_decay"], progress=False, circuits_eval=False)
    new = load_file(str(out / "model.safetensors"))
    old = load_file(str(induction_model_dir() / "model.safetensors"))
    diff = max(float((new[k] - old[k]).abs().max()) for k in old)
    print(f"\nmax |reproduced - shipped| over all weights: {diff:.3e} (torch {torch.__version__}, "
          f"shipped with torch {info['torch']})")
    same_build = info["torch"] == torch.__version__
    assert diff == 0.0 if same_build else diff < 1e-2
    got = json.loads((out / "training.json").read_text())
    assert got["ground_truth"]["previous_token_head"] == info["ground_truth"]["previous_token_head"]
    assert got["ground_truth"]["induction_head"] == info["ground_truth"]["induction_head"]
