"""Layer choice on held-out data, the surface-feature baseline, and per-layer transfer, against
planted ground truth (issue 17, item 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.activations import Activations
from probe.eval_awareness import LayerTransferResult, layer_transfer
from probe.surface import SurfaceError, beats, surface_baseline, surface_features
from probe.sweep import SplitError, layer_sweep
from workbench.results import plots_for

N_PAIRS, T, D = 48, 6, 24


def _design(seed: int = 0, n_pairs: int = N_PAIRS, t_offset: int = 0):
    """Pairs (one per class) on ``T`` templates that each mix both classes."""
    y = np.tile([0, 1], n_pairs)
    pair = np.repeat(np.arange(n_pairs), 2)
    tpl = np.array([f"t{t_offset + p % T}" for p in pair])
    return y, [f"g{t_offset}_{p}" for p in pair], tpl


def _planted(strengths: list[tuple[float, float]], seed: int = 0, t_offset: int = 0, noise: float = 0.3):
    """Activations [L, n, D]: layer l = a * (2y-1) * u_template + b * (2y-1) * v + noise, with
    (a, b) = strengths[l]; u_t is a per-template direction (separates the training templates,
    useless on a new template), v a shared one (survives held-out templates and transfer)."""
    y, groups, tpl = _design(seed, t_offset=t_offset)
    rng = np.random.default_rng(100)  # the directions are the same for every set
    U = rng.standard_normal((2 * T, D))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    v = rng.standard_normal(D)
    v /= np.linalg.norm(v)
    U = U - np.outer(U @ v, v)  # template directions orthogonal to the shared one
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    noise_rng = np.random.default_rng(seed)
    s = (2 * y - 1)[:, None]
    ti = np.array([int(t[1:]) for t in tpl])
    x = np.stack([a * s * U[ti] + b * s * v + noise * noise_rng.standard_normal((y.size, D))
                  for a, b in strengths]).astype(np.float32)
    return x, y, groups, tpl


def _acts(x, y, groups, tpl, name="planted"):
    return Activations(torch.as_tensor(x), list(range(x.shape[0])), "resid_post", y, np.asarray(groups),
                       np.asarray(tpl), "last_prompt", name, ("deploy", "test"))


def _sweep(x, y, groups, tpl, **kw):
    kw = {"C": 1.0, "methods": ("logistic",), "n_resamples": 200, "n_shuffles": 2, "n_random_directions": 4,
          "device": "cpu", **kw}
    return layer_sweep(x, y, groups, templates=tpl, seed=0, **kw)


def test_layer_with_held_out_signal_is_chosen_not_layer_0():
    # every layer separates the training templates; only layer 2 carries the shared signal
    x, y, g, t = _planted([(3.0, 0.0), (3.0, 0.0), (3.0, 1.5), (3.0, 0.0)])
    sw = _sweep(x, y, g, t)
    main = sw.values("logistic", "main")
    assert (main > 0.97).all(), main  # the planted trap: main AUROC cannot choose
    ho = sw.values("logistic", "held_out_templates")
    assert ho[2] > 0.95 and max(ho[[0, 1, 3]]) < 0.8, ho
    ch = sw.choose_layer()
    assert ch.layer == 2 and ch.selection_set == "held_out_templates" and ch.tiebreak == "log_loss"
    df = ch.to_dataframe()
    assert df.loc[df.chosen, "layer"].tolist() == [2] and "held_out_templates_auroc" in df
    assert "not by layer index" in ch.rule and "layer 2 chosen" in ch.summary()


@pytest.mark.parametrize("shared, want", [((2.0, 4.0, 3.0), 1), ((4.0, 2.0, 3.0), 0), ((2.0, 3.0, 4.0), 2)])
def test_exact_ties_broken_by_held_out_log_loss_not_index(shared, want):
    # the shared signal separates held-out templates perfectly at every layer (AUROC 1.00 tie);
    # the strongest one has the lowest held-out log-loss wherever it sits
    x, y, g, t = _planted([(1.0, b) for b in shared], noise=0.2)
    sw = _sweep(x, y, g, t)
    ch = sw.choose_layer()
    assert np.allclose(ch.auroc, 1.0) and ch.tied == [0, 1, 2]
    assert ch.layer == want
    assert ch.tiebreak_value[want] == min(ch.tiebreak_value)


def test_choice_on_a_transfer_set_and_bad_input():
    x, y, g, t = _planted([(3.0, 0.0), (3.0, 1.5), (3.0, 0.0)])
    sw = _sweep(x, y, g, t)
    xt, yt, gt, tt = _planted([(3.0, 0.0), (3.0, 1.5), (3.0, 0.0)], seed=1, t_offset=T)  # unseen templates
    dec = np.stack([sw.probes["logistic"][L].decision(xt[L]) for L in sw.layers])
    ch = sw.choose_layer(transfer=(dec, yt))
    assert ch.selection_set == "transfer" and ch.layer == 1 and ch.auroc[1] > 0.95
    with pytest.raises(SplitError, match="n_layers"):
        sw.choose_layer(transfer=(dec[:2], yt))
    with pytest.raises(SplitError, match="both classes"):
        sw.choose_layer(transfer=(dec, np.ones_like(yt)))


def _texts(y, rng, question_by_label: bool):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    out = []
    for lab in y:
        body = " ".join(rng.choice(words, rng.integers(6, 14)))
        q = lab if question_by_label else rng.integers(0, 2)
        out.append(body + ("?" * int(1 + rng.integers(0, 2)) if q else "."))
    return out


def test_surface_features_counts():
    X, names = surface_features(["Q: what is 12?\n(A) yes\nB) no\n1. maybe!", "plain"], token_counts=[9, 1])
    row = dict(zip(names, X[0]))
    assert names[0] == "tokens" and row["tokens"] == 9
    assert (row["question_marks"], row["exclamation_marks"], row["colons"], row["newlines"], row["digits"],
            row["answer_options"]) == (1, 1, 1, 3, 3, 3)
    assert X[1, 1:].tolist()[:2] == [5.0, 1.0]  # characters, words
    with pytest.raises(SurfaceError, match="token_counts"):
        surface_features(["a"], token_counts=[1, 2])
    with pytest.raises(SurfaceError, match="text prompts"):
        surface_features([3])


def test_surface_baseline_reaches_question_mark_label_and_noise_probe_does_not_beat_it():
    rng = np.random.default_rng(0)
    y, g, t = _design()
    texts = _texts(y, rng, question_by_label=True)
    noise = np.random.default_rng(1).standard_normal((2, y.size, D)).astype(np.float32)  # a no-signal "model"
    sw = _sweep(noise, y, g, t)
    base = surface_baseline(texts, y, groups=g, templates=t, split=(sw.train, sw.test), seed=0, C=1.0,
                            n_resamples=200)
    assert base.auroc("main").value > 0.99 and base.auroc("held_out_templates").value > 0.99
    cmp = base.compare(sw, "logistic")
    assert not cmp["beats_surface_main"].any() and not cmp["beats_surface_held_out_templates"].any()
    assert "surface-feature baseline" in base.summary() and len(base.to_dataframe())
    assert all(fn(base).axes for fn in plots_for(base).values())


def test_planted_probe_beats_a_surface_baseline_without_surface_signal():
    rng = np.random.default_rng(2)
    y, g, t = _design()
    texts = _texts(y, rng, question_by_label=False)  # '?' independent of the label
    x, _, _, _ = _planted([(0.0, 0.0), (0.0, 2.0)])
    sw = _sweep(x, y, g, t)
    base = surface_baseline(texts, y, groups=g, templates=t, split=(sw.train, sw.test), seed=0, C=1.0,
                            n_resamples=200)
    assert base.auroc("held_out_templates").contains(0.5) or base.auroc("held_out_templates").value < 0.7
    cmp = base.compare(sw, "logistic")
    assert cmp["beats_surface_held_out_templates"].tolist() == [False, True]
    assert beats(sw.estimates("logistic", "main")[1], base.auroc("main"))


def test_layer_transfer_per_layer_with_surface_baseline():
    x, y, g, t = _planted([(3.0, 0.0), (3.0, 1.5), (3.0, 0.0)])
    sw = _sweep(x, y, g, t)
    rng = np.random.default_rng(3)
    texts = _texts(y, rng, question_by_label=False)
    base = surface_baseline(texts, y, groups=g, templates=t, split=(sw.train, sw.test), seed=0, C=1.0,
                            n_resamples=200)
    xt, yt, gt, tt = _planted([(3.0, 0.0), (3.0, 1.5), (3.0, 0.0)], seed=1, t_offset=T)
    tr_texts = _texts(yt, rng, question_by_label=True)  # on the transfer set '?' gives the label away
    res = layer_transfer(sw, _acts(xt, yt, gt, tt, "transfer_planted"), chosen_layer=sw.choose_layer().layer,
                         surface=base, prompts=tr_texts, n_resamples=200)
    assert isinstance(res, LayerTransferResult) and res.chosen_layer == 1
    a = [e.value for e in res.auroc]
    assert a[1] > 0.95 and max(a[0], a[2]) < 0.8, a
    assert res.best_transfer_layer() == 1
    df = res.to_dataframe()
    assert df.shape[0] == 3 and {"transfer_auroc", "ci_low", "surface_auroc", "beats_surface", "minus_surface"} <= set(df)
    # beating the baseline is the paired DeLong difference on the same prompts, whose value is the AUROCs' difference
    assert [d.value for d in res.vs_surface] == pytest.approx([e.value - res.surface.value for e in res.auroc])
    assert res.beats_surface() == [d.ci_low > 0 for d in res.vs_surface]
    assert "transfer to transfer_planted" in res.summary()
    figs = [fn(res) for fn in plots_for(res).values()]
    assert figs and all(f.axes for f in figs)
    with pytest.raises(ValueError, match="prompts"):
        layer_transfer(sw, _acts(xt, yt, gt, tt), surface=base)


def test_layer_transfer_selects_on_one_part_and_reports_on_the_other():
    # layer 1 carries the shared signal; the selection part picks it, every AUROC is on the disjoint report part
    x, y, g, t = _planted([(3.0, 0.0), (3.0, 1.5), (3.0, 0.0)])
    sw = _sweep(x, y, g, t)
    xt, yt, gt, tt = _planted([(3.0, 0.0), (3.0, 1.5), (3.0, 0.0)], seed=1, t_offset=T)
    acts = _acts(xt, yt, gt, tt, "transfer_planted")
    res = layer_transfer(sw, acts, select_fraction=0.5, seed=3, n_resamples=200)
    assert res.selection is not None and res.selection.layer == 1 and res.selection.selection_set == "transfer"
    assert res.n_selection == yt.size // 2 and res.n_pos + res.n_neg == yt.size - res.n_selection
    # the report part's AUROCs are those of the complementary examples, recomputed by hand
    from probe.metrics import auroc_estimate

    rng = np.random.default_rng(3)
    sel = np.zeros(yt.size, bool)
    for c in (0, 1):
        idx = np.flatnonzero(yt == c)
        sel[rng.choice(idx, int(round(0.5 * idx.size)), replace=False)] = True
    rep = acts.subset(~sel)
    want = auroc_estimate(sw.probes["logistic"][1].decision(rep.layer(1)), rep.labels, rep.groups, n_resamples=200)
    assert res.auroc[1].value == pytest.approx(want.value)
    df = res.to_dataframe()
    assert df["selected_on_transfer"].tolist() == [False, True, False]
    assert "selected on the transfer selection part: 1" in res.summary()
    assert all(fn(res).axes for fn in plots_for(res).values())
    with pytest.raises(ValueError, match="too few"):
        layer_transfer(sw, acts.subset(range(6)), select_fraction=0.5)
