import numpy as np
import pytest

from probe.metrics import analytic_auroc_gaussian
from probe.sweep import layer_sweep

S = np.array([0.0, 1.0, 2.0])


def planted_layers(n=800, d=32, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = np.tile([0, 1], n // 2)
    X = rng.normal(size=(3, n, d)) + y[None, :, None] * S[:, None, None] * u
    return X.astype(np.float32), y, u


@pytest.fixture(scope="module")
def sweep():
    X, y, u = planted_layers()
    groups = np.arange(len(y)) // 2                 # pairs, one of each class
    templates = (np.arange(len(y)) // 2) % 8         # 8 templates, each mixing classes
    return layer_sweep(X, y, groups, templates=templates, C=1.0, seed=0, n_resamples=1000), u


def test_recovers_planted_direction_and_analytic_auroc(sweep):
    r, u = sweep
    for L in (1, 2):
        assert abs(r.probes["logistic"][L].direction @ u) > 0.95
        assert abs(r.probes["mean_diff"][L].direction @ u) > 0.95
        for m in ("logistic", "mean_diff"):
            assert r.estimates(m)[L].contains(analytic_auroc_gaussian(S[L]))
    assert r.estimates("logistic")[0].contains(0.5)
    assert r.best_layer() == 2


def test_controls_at_chance_and_held_out_templates_close(sweep):
    r, _ = sweep
    assert r.controls_at_chance("logistic")["label_shuffle"]
    ho = r.estimates("logistic", "held_out_templates")[2]
    assert ho.contains(analytic_auroc_gaussian(S[2]))
    sel = r.estimates("logistic", "main", "selectivity")[2]
    assert sel.ci_low > 0.1
    df = r.to_dataframe()
    assert {"p_holm", "ci_low", "ci_high"} <= set(df.columns)
    assert not (set(r.layers) - set(df.layer))


def test_no_group_leak_in_main_split(sweep):
    r, _ = sweep
    g = np.arange(len(r.train)) // 2
    assert not set(g[r.train]) & set(g[r.test])


def test_store_backed_equals_in_memory(tmp_path):
    from workbench.store import write_activation_store

    X, y, _ = planted_layers(n=400, d=16, seed=1)
    store = write_activation_store(tmp_path / "s", {f"resid_post.{L}": X[L] for L in range(3)}, rows_per_shard=64,
                                   row_meta=[{"label": int(v), "group": str(i // 2)} for i, v in enumerate(y)])
    a = layer_sweep(store, C=0.5, controls=False, seed=0, n_resamples=200)
    b = layer_sweep(X, y, np.arange(400) // 2, C=0.5, controls=False, seed=0, n_resamples=200)
    assert a.settings["streamed"] and not b.settings["streamed"]
    np.testing.assert_allclose(a.values(), b.values(), atol=2e-3)


def test_multiclass_sweep():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 100)
    X = rng.normal(size=(2, 300, 10)) + np.eye(10)[y][None] * np.array([0.0, 3.0])[:, None, None]
    r = layer_sweep(X.astype(np.float32), y, C=1.0, seed=0, n_resamples=200)
    assert "mean_diff" not in r.probes
    assert r.estimates("logistic", "main", "accuracy")[1].value > 0.8
    assert r.estimates("logistic")[0].contains(0.5)
