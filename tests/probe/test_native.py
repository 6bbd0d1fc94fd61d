"""The compiled per-layer solver (probe._native), the default for binary probes on in-memory CPU
features: its kernels against numpy/torch references, and whole fits against the batched torch
passes (a second implementation of the same objective) and scikit-learn."""
import numpy as np
import pytest
import torch

pytest.importorskip("numba", reason="the native solver needs numba")

from probe import _native as nv  # noqa: E402
from probe.batched import ProbeFitError, fit_logistic_batched  # noqa: E402


@pytest.mark.parametrize("n,d,P", [(37, 20, 6), (40, 35, 1), (41, 16, 7), (23, 70, 13)])
def test_logits_and_weight_gradient_kernels_match_numpy(n, d, P):
    """Row and problem counts that leave tails in every tile: 2-row x 6-problem tiles, the
    4-row one-problem kernel, the 8-row gradient blocks."""
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(P, d)).astype(np.float32)
    b = rng.normal(size=P).astype(np.float32)
    Z = np.zeros((n, P), np.float32)
    nv._logits(X, W, b, Z)
    np.testing.assert_allclose(Z, X.astype(np.float64) @ W.T.astype(np.float64) + b, rtol=1e-5, atol=1e-4)
    R = rng.normal(size=(n, P)).astype(np.float32)
    G, gb = np.zeros((P, d)), np.zeros(P)
    on = np.ones(P, np.bool_)
    nv._weight_grad(X, R, np.zeros((P, d), np.float32), G, gb, on)
    np.testing.assert_allclose(G, R.T.astype(np.float64) @ X.astype(np.float64), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gb, R.astype(np.float64).sum(0), rtol=1e-6, atol=1e-5)
    # the solver's pass: only the active problems' logits (packed, padded tiles) and gradients
    on[::2] = False
    th = rng.normal(size=(P, d + 1))
    mus, sd = rng.normal(size=(P, d)), rng.uniform(0.5, 2, size=(P, d))
    Zs = np.full((n, P), 7.0, np.float32)
    nv._forward(X, th, on, mus, sd, np.zeros((P + 6) * d, np.float32), np.zeros(P + 6, np.float32),
                np.zeros(n * (P + 6), np.float32), Zs)
    Wr = th[:, :d] / sd
    ref = X.astype(np.float64) @ Wr.T + th[:, d] - (mus * Wr).sum(1)
    np.testing.assert_allclose(Zs[:, on], ref[:, on], rtol=1e-4, atol=1e-3)
    assert (Zs[:, ~on] == 7.0).all()
    nv._weight_grad(X, R, np.zeros((P, d), np.float32), G, gb, on)
    assert (G[~on] == 0).all() and (gb[~on] == 0).all()
    np.testing.assert_allclose(G[on], (R.T.astype(np.float64) @ X.astype(np.float64))[on], rtol=1e-5, atol=1e-4)


def test_gradient_kernel_flushes_float32_blocks_into_float64():
    """100,000 rows of a constant: float32 sums over 512-row blocks, float64 across blocks, so
    the error stays at one block's (a float32 running sum drifts by ~1e-3 here)."""
    X = np.full((100_000, 17), 0.1, np.float32)
    R = np.ones((100_000, 2), np.float32)
    G, gb = np.zeros((2, 17)), np.zeros(2)
    nv._weight_grad(X, R, np.zeros((2, 17), np.float32), G, gb, np.ones(2, np.bool_))
    exact = 100_000 * np.float64(np.float32(0.1))
    assert abs(float(np.cumsum(X[:, 0], dtype=np.float32)[-1]) / exact - 1) > 1e-4  # what the flush avoids
    np.testing.assert_allclose(G, exact, rtol=1e-5)
    assert gb.tolist() == [100_000.0, 100_000.0]


def test_vectorised_exp_and_loss_match_float64():
    a = np.concatenate([-np.logspace(-8, 2.3, 5000), [0.0, -87.0, -200.0]]).astype(np.float32)
    out, kb = np.zeros_like(a), np.zeros(a.size, np.int32)
    nv._exp_neg(a, out, kb, a.size)
    ref = np.exp(a.astype(np.float64))
    ok = a > -87
    assert np.abs(out[ok] / ref[ok] - 1).max() < 3e-7
    assert (out[~ok] <= 2e-38).all() and (out >= 0).all()
    rng = np.random.default_rng(0)
    n, P = 501, 3
    Z = (rng.normal(size=(n, P)) * 20).astype(np.float32)
    nsgn = rng.choice([-1.0, 1.0], size=(n, P)).astype(np.float32)
    w = rng.random((n, P)).astype(np.float32)
    R, f = np.zeros_like(Z), np.zeros(P)
    bufs = np.zeros(n * P, np.float32), np.zeros(n * P, np.float32), np.zeros(n * P, np.int32)
    nv._residual_loss(Z, nsgn, w, R, f, *bufs)
    m = torch.as_tensor(nsgn * Z, dtype=torch.float64)
    wt = torch.as_tensor(w, dtype=torch.float64)
    f_ref = (torch.nn.functional.softplus(m) * wt).sum(0).numpy()
    r_ref = (torch.as_tensor(nsgn, dtype=torch.float64) * wt * torch.sigmoid(m)).numpy()
    np.testing.assert_allclose(f, f_ref, rtol=1e-6)
    np.testing.assert_allclose(R, r_ref, rtol=1e-6, atol=1e-7)


def _problems(seed=0, L=3, n=301, d=40, P=7):
    """Several problems per layer with their own labels, row sets and C; huge feature means."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    U = rng.normal(size=(L, d))
    X = rng.normal(size=(L, n, d)) + y[None, :, None] * np.linspace(0.3, 2, L)[:, None, None] * U[:, None, :]
    X += rng.normal(size=(L, 1, d)) * 500
    Y = np.stack([y] + [rng.permutation(y) for _ in range(P - 1)])
    W = (rng.random((P, n)) < np.linspace(0.5, 0.9, P)[:, None]).astype(np.float32)
    C = np.exp(rng.uniform(np.log(0.01), np.log(10), size=(L, P)))
    return X.astype(np.float32), Y, W, C


@pytest.mark.parametrize("P", [1, 4, 6, 7, 11])
def test_native_fit_matches_the_batched_torch_passes(P):
    """Same objective, two implementations (the torch passes batch layers; the native solver
    runs layer by layer with per-problem histories): the same optimum, to float32 resolution."""
    X, Y, W, C = _problems(P=P)
    a = fit_logistic_batched(X, Y, W, C=C, device="cpu", tol=1e-6, backend="torch")
    b = fit_logistic_batched(X, Y, W, C=C, device="cpu", tol=1e-6, backend="native")
    # means ~500: both stop at the float32 noise floor (gradient ~1e-5), which counts as converged
    assert a.converged and b.converged and b.grad_max <= 1e-4
    assert b.problem_converged.shape == (3, P)
    rel = (a.coef - b.coef).abs().amax((2, 3)) / a.coef.abs().amax((2, 3))
    assert float(rel.max()) < 2e-3
    # intercepts on raw features with means ~500: compare the decision values instead
    za = torch.einsum("lnd,lpdk->lpnk", torch.as_tensor(X), a.coef) + a.intercept[:, :, None]
    zb = torch.einsum("lnd,lpdk->lpnk", torch.as_tensor(X), b.coef) + b.intercept[:, :, None]
    assert float((za - zb).abs().max()) < 2e-2 * float(za.abs().max())
    torch.testing.assert_close(a.stats.mean, b.stats.mean)
    torch.testing.assert_close(a.stats.std, b.stats.std)


def test_native_threads_give_the_same_result_and_auto_picks_native(monkeypatch):
    import probe.batched as pb

    X, Y, W, C = _problems(P=3, L=4)
    calls = []
    orig = pb._solve_native
    monkeypatch.setattr(pb, "_solve_native", lambda *a, **k: calls.append(1) or orig(*a, **k))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fit_logistic_batched(X, Y, W, C=0.5, device="cpu")
        torch.set_num_threads(2)
        two = fit_logistic_batched(X, Y, W, C=0.5, device="cpu")
    finally:
        torch.set_num_threads(old)
    assert calls == [1, 1]  # "auto": binary, in-memory, CPU
    assert torch.equal(one.coef, two.coef) and one.n_iter == two.n_iter


def test_native_max_iter_and_not_converged():
    X, Y, W, C = _problems(P=2)
    fit = fit_logistic_batched(X, Y, W, C=C, device="cpu", max_iter=2, tol=1e-8, backend="native")
    assert fit.n_iter == 2 and not fit.converged and fit.grad_max > 1e-8
    assert not bool(fit.problem_converged.all())


def test_native_reads_float16_features():
    X, Y, W, C = _problems(P=2)
    X16 = torch.as_tensor(X - X.mean(1, keepdims=True)).half()
    a = fit_logistic_batched(X16, Y, W, C=1.0, device="cpu", tol=1e-6, backend="native")
    b = fit_logistic_batched(X16.float(), Y, W, C=1.0, device="cpu", tol=1e-6, backend="native")
    torch.testing.assert_close(a.coef, b.coef)


def test_native_backend_refuses_what_it_cannot_fit():
    X, Y, W, C = _problems(P=2)
    y3 = np.arange(X.shape[1]) % 3
    with pytest.raises(ProbeFitError, match="two classes and these labels have 3"):
        fit_logistic_batched(X, y3, device="cpu", backend="native")
    with pytest.raises(ProbeFitError, match="backend must be one of"):
        fit_logistic_batched(X, Y, W, device="cpu", backend="numba")
    auto = fit_logistic_batched(X, y3, device="cpu")  # auto: three classes go to the batched passes
    assert auto.coef.shape[-1] == 3
