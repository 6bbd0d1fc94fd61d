"""Builders against hand computation from recorded activations and single runs."""

import pytest
import torch

from steering import build_caa_vectors, contrastive_vectors, diff_in_means, pca_vectors, record_activations
from steering.aggregators import pca_difference
from steering.build import BuildError

RECORDS = [
    {"question": "Do you like tea?\n (A) yes\n (B) no", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"},
    {"question": "Pick one.\n (A) red\n (B) blue", "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"},
    {"question": "Is it raining?\n (A) no\n (B) yes", "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"},
]


def _letter_acts(m, r, L):
    acts = []
    for key in ("answer_matching_behavior", "answer_not_matching_behavior"):
        toks = m.tokenize(r["question"], chat=True, assistant_prefix=r[key][:2])
        assert m.to_str_tokens(toks)[-1] == r[key][1]  # the last token is the letter
        _, c = m.run_with_cache(toks, [f"resid_post.{L}"], positions="last", device="cpu")
        acts.append(c[f"resid_post.{L}"][0])
    return acts[0] - acts[1]


def test_caa_vector_is_the_letter_balanced_mean_difference_at_the_answer_letter(tiny_model):
    m = tiny_model("llama")
    v = build_caa_vectors(m, RECORDS, layers=[0, 1])
    raw = build_caa_vectors(m, RECORDS, layers=[0, 1], balance_letters=False)
    for L in (0, 1):
        d = [_letter_acts(m, r, L) for r in RECORDS]
        # groups (A,B): record 0; (B,A): records 1 and 2 -> equal weight per group
        assert torch.allclose(v.vector(L), (d[0] + (d[1] + d[2]) / 2) / 2, atol=1e-5)
        assert torch.allclose(raw.vector(L), torch.stack(d).mean(0), atol=1e-5)
    assert v.method == "caa" and v.meta["n_positive"] == 3 and v.meta["answer_tokens"] == ["A", "B"]
    assert v.meta["letter_groups"] == {"A/B": 1, "B/A": 2} and v.meta["unmirrored_groups"] == []
    assert v.provenance.model_hash == m.weights_hash and v.provenance.sites == ("resid_post.0", "resid_post.1")
    # the data hash identifies the data
    assert build_caa_vectors(m, RECORDS[:2], layers=[0]).provenance.data_hash != v.provenance.data_hash
    with pytest.raises(Exception, match="not an A/B record: missing"):
        build_caa_vectors(m, [{"question": "q"}], layers=[0])
    with pytest.raises(BuildError, match="no CAA records"):
        build_caa_vectors(m, [], layers=[0])


def test_letter_balancing_removes_the_letter_residue(tiny_model):
    """Same question, answers swapped: no behaviour, only letters. The raw mean difference of an
    unbalanced sample (3 x A-matching, 1 x B-matching) is half the letter difference; the balanced one is 0."""
    m = tiny_model("llama")
    q = "Which do you pick?\n (A) one\n (B) two"
    ab = {"question": q, "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}
    ba = {"question": q, "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"}
    recs = [ab, ab, ab, ba]
    d = _letter_acts(m, ab, 1)
    raw = build_caa_vectors(m, recs, layers=[1], balance_letters=False).vector(1)
    bal = build_caa_vectors(m, recs, layers=[1]).vector(1)
    assert torch.allclose(raw, d / 2, atol=1e-5) and raw.norm() > 0.1
    assert bal.norm() < 1e-5
    # a group without its mirror ((C, A): nothing cancels its letter term) is left out
    q3 = q + "\n (C) three"
    recs3 = [{"question": q3, "answer_matching_behavior": a, "answer_not_matching_behavior": b}
             for a, b in [("(A)", "(B)"), ("(B)", "(A)"), ("(C)", "(A)")]]
    v3 = build_caa_vectors(m, recs3, layers=[1])
    assert v3.vector(1).norm() < 1e-5 and v3.meta["unmirrored_groups"] == ["C/A"] and v3.meta["n_excluded"] == 1
    assert build_caa_vectors(m, recs3, layers=[1], balance_letters=False).vector(1).norm() > 0.1
    pca = build_caa_vectors(m, RECORDS, layers=[1], aggregator="pca")
    mean = build_caa_vectors(m, RECORDS, layers=[1])
    assert pca.method == "caa_pca" and torch.isclose(pca.vector(1).norm(), mean.vector(1).norm(), rtol=1e-4)
    assert float(pca.vector(1) @ mean.vector(1)) > 0


def test_contrastive_pca_and_diff_in_means(tiny_model):
    m = tiny_model("gpt2")
    pos, neg = ["I love this", "What a joy", "so happy"], ["I hate this", "What a pain", "so sad"]
    acts = record_activations(m, pos + neg, [1], positions="mean")[1]
    v = contrastive_vectors(m, pos, neg, [1], positions="mean")
    assert torch.allclose(v.vector(1), acts[:3].mean(0) - acts[3:].mean(0), atol=1e-5)
    p = pca_vectors(m, pos, neg, [1], positions="mean")
    assert torch.allclose(p.vector(1), pca_difference(acts[:3], acts[3:]), atol=1e-5)
    assert 0 < p.meta["explained_variance_ratio"][1] <= 1
    d = diff_in_means(m, pos, neg[:2], [1], positions="mean")
    assert torch.allclose(d.vector(1), acts[:3].mean(0) - acts[3:5].mean(0), atol=1e-5)
    assert d.method == "diff_in_means"
    with pytest.raises(Exception, match="paired"):
        pca_vectors(m, pos, neg[:2], [1])
    with pytest.raises(BuildError, match="one position per item"):
        contrastive_vectors(m, pos, neg, [1], positions=[-1, -2])
