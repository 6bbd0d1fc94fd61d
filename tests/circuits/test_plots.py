"""Every result has a plot function that returns a Figure (no pyplot state) and saves a real PNG."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure

from circuits import (
    LogitDiff,
    attribution_agreement,
    attribution_patching,
    direct_logit_attribution,
    head_scores,
    logit_lens,
    patching_sweep,
    path_patching,
    plots,
    repeated_random_tokens,
)


def test_plots_return_figures_and_save(tiny_model, tmp_path):
    backend = matplotlib.get_backend()
    model = tiny_model("gpt2", "tl")
    metric = LogitDiff([ord("a"), ord("b")], [ord("c"), ord("d")])
    clean, corrupt = ["a cat sat", "a dog ran"], ["a cow sat", "a dog run"]
    pr = patching_sweep(model, clean, corrupt, "resid_pre", metric=metric)
    ph = patching_sweep(model, clean, corrupt, "z", metric=metric, per_position=True)
    ex = patching_sweep(model, clean, corrupt, "z", metric=metric)
    at = attribution_patching(model, clean, corrupt, "head", metric=metric)
    rep = attribution_agreement(at, ex, k=3)
    lens = logit_lens(model, ["hello world", "abc"], targets="o")
    hs = head_scores(model, repeated_random_tokens(model, 3, 6))
    dla = direct_logit_attribution(model, clean, "a", "c")
    dp = path_patching(model, clean, corrupt, (0, 1), metric=metric)
    figs = [plots.plot_patching(pr), plots.plot_patching(ph), plots.plot_patching(ex, normalized=False),
            plots.plot_lens(lens), plots.plot_lens_table(lens), plots.plot_head_scores(hs),
            plots.plot_attribution_agreement(at, ex, rep), plots.plot_dla(dla), plots.plot_direct_path(dp)]
    for i, f in enumerate(figs):
        assert isinstance(f, Figure)
        p = plots.save_figure(f, tmp_path / f"f{i}.png")
        assert p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == backend  # no backend switching


def test_results_summarise_in_one_string(tiny_model):
    from circuits import copying_scores

    model = tiny_model("gpt2", "tl")
    metric = LogitDiff([ord("a"), ord("b")], [ord("c"), ord("d")])
    clean, corrupt = ["a cat sat", "a dog ran"], ["a cow sat", "a dog run"]
    pr = patching_sweep(model, clean, corrupt, "z", metric=metric)
    top = pr.top(1)[0]
    s = pr.summary()
    assert s.startswith("denoise patching of z by layer x head (2 x 4 cells, 2 prompts)")
    assert f"layer {top[0][0]} head {top[0][1]} {top[1]:.2f}" in s
    at = attribution_patching(model, clean, corrupt, "head", metric=metric)
    assert "8 nodes, 2 prompts" in at.summary()
    dp = path_patching(model, clean, corrupt, (0, 1), metric=metric)
    assert "path patching from L0H1" in dp.summary() and "to the logits" in dp.summary()
    lens = logit_lens(model, ["hello world", "abc"], targets="o")
    assert lens.summary().startswith("logit lens (raw coordinates) over 3 stages, 2 prompts")
    hs = head_scores(model, repeated_random_tokens(model, 3, 6))
    a, b, v = hs.top("induction", 1)[0]
    assert f"L{a}H{b} {v:.2f}" in hs.summary() and "over 3 sequences" in hs.summary()
    dla = direct_logit_attribution(model, clean, "a", "c")
    assert "direct logit attribution" in dla.summary() and "decomposition error" in dla.summary()
    cs = copying_scores(model)
    assert f"of {cs.scores.numel()} heads positive" in cs.summary()
    for r in (pr, at, dp, lens, hs, dla, cs):
        assert isinstance(r.summary(), str)
