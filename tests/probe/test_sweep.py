"""Layer sweeps on planted directions: layer L has x = noise + y * s_L * u (s = 0, 1, 2)."""
import numpy as np
import pytest

from probe.metrics import analytic_auroc_gaussian
from probe.sweep import layer_sweep

S = np.array([0.0, 1.0, 2.0])


def planted_layers(n=4000, d=16, seed=0):
    """Pairs (one example of each class) in 8 templates; 3000 training rows (1500 per class):
    the learned directions' cosine with u is ~0.99 at s=1 (see tests/probe/test_probes.py)."""
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
        for m in ("logistic", "mean_diff"):
            cos = float(r.probes[m][L].direction @ u)
            assert cos > 0.95, (m, L, cos)
            # the test AUROC's interval contains the analytic AUROC of the learned direction
            assert r.estimates(m)[L].contains(analytic_auroc_gaussian(S[L], cosine=cos)), (m, L)
    assert r.estimates("logistic")[0].contains(0.5)
    assert r.best_layer() == 2
    # the best layer's headline interval is a cluster bootstrap; the other layers' are analytic
    assert "bootstrap" in r.estimates("logistic")[2].method
    assert "Obuchowski" in r.estimates("logistic")[1].method


def test_controls_at_chance_and_held_out_templates_close(sweep):
    r, u = sweep
    assert r.controls_at_chance("logistic")["label_shuffle"]
    assert r.controls_at_chance("mean_diff")["label_shuffle"]
    cos = float(r.probes["logistic"][2].direction @ u)
    ho = r.estimates("logistic", "held_out_templates")[2]
    assert ho.contains(analytic_auroc_gaussian(S[2], cosine=cos))
    sel = r.estimates("logistic", "main", "selectivity")[2]
    assert sel.ci_low > 0.1
    # oriented random directions are a baseline, above 0.5 with a strong signal, below the probe
    rd = r.estimates("random", "random_direction")[2]
    assert rd.value > 0.5 and rd.ci_high < r.estimates("logistic")[2].ci_low
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
    assert np.array_equal(a.test, b.test)  # group ids spelled "0" vs 0 give the same split
    np.testing.assert_allclose(a.values(), b.values(), atol=2e-3)
    for L in range(3):
        np.testing.assert_allclose(a.probes["logistic"][L].coef, b.probes["logistic"][L].coef, rtol=2e-2, atol=2e-3)


def test_store_backed_sweep_with_controls_has_every_row(tmp_path):
    """With controls on (templates from the store's metadata), every (layer, method, condition)
    has its AUROC row, and the numbers equal the in-memory sweep's."""
    from workbench.store import write_activation_store

    X, y, _ = planted_layers(n=400, d=16, seed=2)
    g, t = np.arange(400) // 2, (np.arange(400) // 2) % 4
    store = write_activation_store(tmp_path / "s", {f"resid_post.{L}": X[L] for L in range(3)}, rows_per_shard=64,
                                   row_meta=[{"label": int(v), "group": str(g[i]), "template": f"t{t[i]}"}
                                             for i, v in enumerate(y)])
    r = layer_sweep(store, C=0.5, seed=0, n_resamples=200)
    m = layer_sweep(X, y, g, templates=t, C=0.5, seed=0, n_resamples=200)
    df = r.to_dataframe()
    got = df[df.metric == "auroc"].groupby(["method", "condition"]).layer.nunique()
    for key in [("logistic", "main"), ("logistic", "label_shuffle"), ("logistic", "held_out_templates"),
                ("mean_diff", "main"), ("mean_diff", "held_out_templates"), ("random", "random_direction")]:
        assert got[key] == 3, key
    for cond in ("main", "held_out_templates", "label_shuffle"):
        np.testing.assert_allclose(r.values("logistic", cond), m.values("logistic", cond), atol=2e-3)


def test_multiclass_sweep():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 100)
    X = rng.normal(size=(2, 300, 10)) + np.eye(10)[y][None] * np.array([0.0, 3.0])[:, None, None]
    r = layer_sweep(X.astype(np.float32), y, C=1.0, seed=0, n_resamples=200)
    assert "mean_diff" not in r.probes
    assert r.estimates("logistic", "main", "accuracy")[1].value > 0.8
    assert r.estimates("logistic")[0].contains(0.5)


def test_best_layer_ties_go_to_the_probe_that_survives_held_out_templates():
    """Layers 1 and 2 both separate the test split perfectly; layer 1 only reads which template
    a prompt came from (each template has one label), layer 2 reads the planted concept."""
    rng = np.random.default_rng(3)
    n, d = 400, 16
    t = np.arange(n) % 8
    y = (t < 4).astype(int)
    u = np.eye(d)[0]
    X = rng.normal(size=(3, n, d)) * 0.1
    X[1, :, 1:9] += 5.0 * np.eye(8)[t]           # template identity
    X[2] += 10.0 * y[:, None] * u                # the concept
    r = layer_sweep(X.astype(np.float32), y, np.arange(n) // 8, templates=t, template_folds=4, C=1.0, seed=0,
                    n_resamples=200)
    main = r.values()
    assert main[1] == main[2] == 1.0
    assert r.values("logistic", "held_out_templates")[1] < 0.9
    assert r.best_layer() == 2


def test_mean_difference_only_sweep_defaults_to_its_method():
    """A sweep without the logistic probe: every accessor's default method is the one it ran
    (they all raised KeyError for "logistic" before)."""
    X, y, u = planted_layers(n=600)
    r = layer_sweep(X, y, methods=("mean_diff",), seed=0, n_resamples=200)
    assert r.methods == ["mean_diff"]
    assert r.best_layer() == 2 and r.values()[2] > 0.85 and r.estimates()[0].contains(0.5)
    assert "mean_diff probe" in r.summary()
    assert r.controls_at_chance()["label_shuffle"]
    assert len(r.layer_table()) == 3
    d = r.directions()["resid_post.2"].numpy()
    assert abs(float(d @ u)) / np.linalg.norm(d) > 0.9
