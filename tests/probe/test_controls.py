import numpy as np

from probe.controls import artifact_effect, token_artifact_control
from probe.datasets import Example, LabelledPromptSet


def test_token_artifact_explains_a_random_models_score(tiny_model):
    """A random tiny model cannot read the (random) labels from content; appending a
    label-correlated token makes the probe near-perfect, and removing it returns it to chance.
    240 examples, half of them test (60 per class). The true explained fraction is 1 (the model
    cannot read the labels without the token); its estimate is 1 - (AUROC_removed - 0.5) / 0.49
    with AUROC_removed ~ 0.5 +- 0.053 and a bootstrap half-width of ~0.22, so "the token
    explains more than half of the score" (lower bound > 0.5) fails for about 0.5% of seeds,
    while a probe that read content (explained ~ 0) fails it surely."""
    m = tiny_model("llama")
    rng = np.random.default_rng(0)
    words = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "paper", "glass"]
    ds = LabelledPromptSet("rand", [Example(" ".join(rng.choice(words, 5)), int(i % 2)) for i in range(240)], chat=False)
    r = token_artifact_control(m, ds, test_size=0.5, n_resamples=1000, batch_size=64)
    assert r.n_test == 120
    for i in range(len(r.layers)):
        assert r.auroc["with_artifact"][i].value > 0.85
        assert r.auroc["artifact_removed"][i].contains(0.5)
        assert r.auroc["clean"][i].contains(0.5)
        assert r.auroc["artifact_swapped"][i].value < 0.2
        assert r.explained[i].ci_low > 0.5, r.explained[i]
    assert set(r.to_dataframe().quantity) >= {"auroc_with_artifact", "explained_fraction"}


def test_token_artifact_reuses_given_activations(tiny_model):
    from probe.activations import collect

    m = tiny_model("llama")
    rng = np.random.default_rng(1)
    words = ["apple", "river", "stone", "cloud", "green", "music"]
    ds = LabelledPromptSet("rand", [Example(" ".join(rng.choice(words, 4)), int(i % 2)) for i in range(40)], chat=False)
    base = collect(m, ds, read="last_prompt", batch_size=64)
    a = token_artifact_control(m, ds, removed=base, n_resamples=200, batch_size=64)
    b = token_artifact_control(m, ds, n_resamples=200, batch_size=64)
    for c in a.auroc:
        np.testing.assert_allclose([e.value for e in a.auroc[c]], [e.value for e in b.auroc[c]], atol=1e-6)


def test_artifact_effect_zero_when_removal_changes_nothing():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 100)
    s = rng.normal(size=200) + y
    est = artifact_effect(s, s, y)
    assert est.value == 0 and est.contains(0)
