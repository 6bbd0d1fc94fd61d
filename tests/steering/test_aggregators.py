import pytest
import torch

from steering.aggregators import AggregatorError, get_aggregator, mean_difference, pca_difference


def test_mean_difference_by_hand():
    pos = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    neg = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 5.0]])
    assert torch.allclose(mean_difference(pos, neg), torch.tensor([2.0 - 1.0, 3.0 - 2.0]))


def test_pca_recovers_a_planted_direction_up_to_sign_and_scale():
    g = torch.Generator().manual_seed(0)
    d, n = 32, 200
    planted = torch.randn(d, generator=g)
    planted /= planted.norm()
    # paired differences vary mostly along `planted` (plus small isotropic noise), with a positive mean
    coef = 2.0 + 3.0 * torch.randn(n, generator=g)
    neg = torch.randn(n, d, generator=g)
    pos = neg + coef[:, None] * planted + 0.05 * torch.randn(n, d, generator=g)
    v = pca_difference(pos, neg)
    cos = torch.nn.functional.cosine_similarity(v, planted, dim=0)
    assert cos > 0.999  # signed to agree with the mean difference (mean coef is +2)
    assert torch.isclose(v.norm(), mean_difference(pos, neg).norm(), rtol=1e-5)


def test_pca_sign_follows_the_mean_difference():
    g = torch.Generator().manual_seed(1)
    neg = torch.randn(50, 8, generator=g)
    direction = torch.zeros(8)
    direction[0] = 1
    pos = neg - (1.0 + torch.rand(50, generator=g))[:, None] * direction
    v = pca_difference(pos, neg)
    assert v[0] < 0 and float(v @ mean_difference(pos, neg)) > 0


def test_errors():
    with pytest.raises(AggregatorError, match="paired"):
        pca_difference(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(AggregatorError, match="differ in width"):
        mean_difference(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(AggregatorError, match="identical"):
        pca_difference(torch.ones(3, 4), torch.zeros(3, 4))
    with pytest.raises(AggregatorError, match="unknown aggregator 'median'"):
        get_aggregator("median")
    assert get_aggregator("pca")[1] is pca_difference
