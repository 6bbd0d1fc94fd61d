import numpy as np
import pytest
from matplotlib.figure import Figure

from probe.sweep import layer_sweep


@pytest.fixture(scope="module")
def sweep():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    X = rng.normal(size=(2, 200, 8)) + y[None, :, None] * np.array([0.5, 2.0])[:, None, None] * np.eye(8)[0]
    return layer_sweep(X.astype(np.float32), y, templates=np.arange(200) % 4, C=1.0, n_resamples=200)


def test_direction_set_roundtrip(sweep, tmp_path):
    from workbench.vectors import DirectionSet

    ds = sweep.directions("mean_diff")
    ds.save(tmp_path / "v")
    back = DirectionSet.load(tmp_path / "v")
    assert back.method == "probe_mean_diff" and back.meta["points_towards"] == "1"
    np.testing.assert_allclose(back["resid_post.1"].numpy(), sweep.probes["mean_diff"][1].direction, atol=1e-6)
    assert abs(float(back["resid_post.1"][0])) > 0.9
    assert "resid_post.1" in back.meta["test_auroc"]


def test_plots_return_figures(sweep):
    from probe.plots import plot_layer_sweep

    fig = plot_layer_sweep(sweep)
    assert isinstance(fig, Figure) and fig.axes[0].get_ylabel() == "test auroc"
