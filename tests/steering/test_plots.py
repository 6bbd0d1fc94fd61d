"""Every result has a plot function that takes only the result (+ ax) and returns a Figure."""

import numpy as np
import torch

from steering import plots
from steering.calibration import ResidualNorms, StrengthMatch
from steering.compare import PersonaComparison
from steering.personas import PersonaVectors
from steering.sweeps import SweepResult
from steering.vector import SteeringVector
from workbench.sites import Site
from workbench.stats import Estimate


def E(v, w=0.1):
    return Estimate(v, v - w, v + w, n=10, method="test")


def test_plots_return_figures_without_pyplot():
    from matplotlib.figure import Figure

    vec = SteeringVector({Site("resid_post", L): torch.ones(4) * L for L in (1, 2)}, "caa")
    rng = np.random.default_rng(0)
    vals = {("b", 2, m, k): rng.uniform(0, 1, 10) for m in (-1.0, 0.0, 1.0) for k in ("steer", "random")}
    sweep = SweepResult(["b"], [2], [-1.0, 0.0, 1.0], vals)
    norms = ResidualNorms({Site("resid_post", 1): E(10.0), Site("resid_post", 2): E(12.0)}, 1, 10)
    sm = StrengthMatch([{"label": "a", "site": "resid_post.1", "norm": 2.0, "multiplier": 1.0, "achieved": E(0.1, 0.01),
                         "evaluations": 3}], 0.1, "kl", "all", curves={"a": [(1.0, 0.05), (2.0, 0.1), (4.0, 0.3)]})
    pv = PersonaVectors({"p": vec, "q": vec.scaled(2)})
    comp = PersonaComparison(["p", "q", "r"], ["s"], 2, "all", {},
                             {(p, m, "s"): E(x) for p, x in zip("pqr", (0.1, 0.2, 0.3)) for m in ("prompt", "steer")},
                             {"s": Estimate(1.0, 0.5, 1.0, n=3, method="t", p_value=0.3)}, {})
    figs = [plots.plot_vector(vec), plots.plot_sweep(sweep), plots.plot_residual_norms(norms),
            plots.plot_strength_match(sm), plots.plot_persona_vectors(pv), plots.plot_persona_comparison(comp)]
    for f in figs:
        assert isinstance(f, Figure) and f.axes
    # an ax can be passed in
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.plot_sweep(sweep, ax=ax) is fig
    assert "Spearman rho = 1.00" in figs[-1].axes[0].get_title()


def test_results_summarise_in_one_string():
    rng = np.random.default_rng(0)
    vals = {("b", 2, m, k): rng.uniform(0, 1, 10) + (m if k == "steer" else 0) for m in (-1.0, 0.0, 1.0)
            for k in ("steer", "random")}
    sweep = SweepResult(["b"], [2], [-1.0, 0.0, 1.0], vals)
    s = sweep.summary()
    assert s.startswith("CAA sweep, p(matching): b: best layer 2, effect ") and ", monotone" in s
    assert str(sweep.effect("b", 2)) in s and "random control" in s
    norms = ResidualNorms({Site("resid_post", 1): E(10.0), Site("resid_post", 2): E(12.0)}, 1, 10)
    assert norms.summary() == (f"mean residual norm over 10 prompts (first 1 token(s) skipped) at 2 sites: "
                               f"resid_post.1 {E(10.0)}; resid_post.2 {E(12.0)}")
    sm = StrengthMatch([{"label": "a", "site": "resid_post.1", "norm": 2.0, "multiplier": 1.0,
                         "achieved": E(0.1, 0.01), "evaluations": 3}], 0.1, "kl", "all")
    assert sm.summary() == f"strength matched to kl = 0.1 (positions all): a at resid_post.1: norm 2 (x1) -> {E(0.1, 0.01)}"
    rho = Estimate(1.0, 0.5, 1.0, n=3, method="t", p_value=0.3)
    comp = PersonaComparison(["p", "q", "r"], ["s"], 2, "all", {}, {}, {"s": rho}, {})
    assert comp.summary() == f"3 personas by system prompt vs by steering at layer 2 (matched strength): s: Spearman {rho}"
