"""probe.moral: the ETHICS and group-mention sets by hand, and cross-fitted scores on planted data."""

import numpy as np

from probe.moral import crossfit_scores, ethics_set, group_mention_set
from probe.splits import group_kfold
from workbench import datasets
from workbench.stats import auroc


def test_ethics_set_keeps_neighbouring_rows_together():
    recs = datasets.ethics_commonsense()[:6]
    ds = ethics_set(recs)
    assert list(ds.labels) == [r["label"] for r in recs] and ds.read == "last_prompt"
    assert list(ds.groups) == ["rows0", "rows0", "rows1", "rows1", "rows2", "rows2"]


def test_group_mention_set_puts_terms_in_neutral_carriers():
    items = datasets.bbq_items(["Religion", "Nationality"])
    ds = group_mention_set(items, ["Religion", "Nationality"], carriers=("I met a {term}", "A {term}"))
    prompts = [e.prompt for e in ds.examples]
    assert "I met a Muslim" in prompts and "A Muslim" in prompts and "I met a British" in prompts
    ex = ds.examples[prompts.index("I met a Muslim")]
    assert ex.label == 0 and ex.group == "muslim" and ex.template == "carrier0"
    assert {e.label for e in ds.examples} == {0, 1} and len(prompts) == len(set(prompts))
    # every term appears once per carrier
    terms = {e.group for e in ds.examples}
    assert len(ds) == 2 * len(terms)


def test_crossfit_scores_are_held_out_mean_difference_projections():
    rng = np.random.default_rng(0)
    n, d = 120, 8
    y = np.repeat([0, 1], n // 2)
    groups = np.arange(n) // 2
    x = rng.normal(size=(n, d))
    x[y == 1, 0] += 1.5  # planted direction
    s = crossfit_scores(x, y, groups, folds=4, seed=1)
    assert auroc(s, y, pos_label=1).value > 0.8
    # fold by fold: the direction comes from the other folds only
    for train, test in group_kfold(y, groups, k=4, seed=1):
        mu = x[train].mean(0)
        dvec = x[train][y[train] == 1].mean(0) - x[train][y[train] == 0].mean(0)
        assert np.allclose(s[test], (x[test] - mu) @ dvec)
