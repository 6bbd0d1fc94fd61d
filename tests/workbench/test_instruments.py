"""Self-report instruments: loading, keyed scoring, administration through the K-option scorer, and the
order-symmetry / format-effect tests against planted biases (probabilities and fake models)."""

import json
import re

import numpy as np
import pytest
import torch

from workbench.instruments import (
    FORMATS,
    Instrument,
    InstrumentError,
    InstrumentItem,
    SelfReportResult,
    administer,
    build_item,
    format_effect,
    get_format,
    load_instrument,
    load_ipip_neo,
    order_symmetry,
    plot_format_effect,
    plot_order_symmetry,
    plot_trait_scores,
)
from workbench.scorers import koption_scores


def test_ipip_neo_tables_keys_and_subset_balance():
    ins = load_ipip_neo(120)
    assert len(ins) == 120 and ins.traits == ["Neuroticism", "Extraversion", "Openness", "Agreeableness",
                                              "Conscientiousness"]
    assert sum(it.key < 0 for it in ins.items) == 55
    assert len(load_ipip_neo(300)) == 300
    # item 1 (N1 Anxiety, + keyed); reverse keyed items score 6 - x
    assert ins.items[0].text == "Worry about things." and ins.items[0].key == 1
    assert ins.keyed(np.array([1.0, 4.5]), np.array([1, -1])).tolist() == [1.0, 1.5]
    sub = ins.subset(["A", "Conscientiousness"], n_per_trait=6, seed=1)
    assert len(sub) == 12 and sub.traits == ["Agreeableness", "Conscientiousness"]
    for t in sub.traits:
        keys = [it.key for it in sub.items if it.trait == t]
        assert sum(k > 0 for k in keys) == 3  # balanced keys
        assert len({it.facet for it in sub.items if it.trait == t}) >= 5  # spread over facets
    assert [it.id for it in ins.subset(n_per_trait=6, seed=1).items] == [it.id for it in
                                                                          ins.subset(n_per_trait=6, seed=1).items]
    with pytest.raises(InstrumentError, match="no trait"):
        ins.subset(["Honesty"])
    assert load_ipip_neo(120, wording="second_person").items[1].text == "Make friends easily"


def test_load_instrument_csv_and_anthropic_jsonl(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("text,trait,key,facet\nI like maps.,cartophilia,+1,\nMaps bore me.,cartophilia,-,x\n")
    ins = load_instrument(p)
    assert [it.key for it in ins.items] == [1, -1] and ins.traits == ["cartophilia"] and ins.items[1].facet == "x"
    q = tmp_path / "persona.jsonl"
    q.write_text("\n".join(json.dumps(r) for r in [
        {"statement": "I love people", "answer_matching_behavior": " Yes"},
        {"statement": "People annoy me", "answer_matching_behavior": " No"}]))
    ins2 = load_instrument(q, trait="agreeableness")
    assert [it.key for it in ins2.items] == [1, -1] and ins2.items[0].text == "I love people"
    with pytest.raises(InstrumentError, match="names no trait"):
        load_instrument(q)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,trait,key\nA,t,2\n")
    with pytest.raises(InstrumentError, match="key must be"):
        load_instrument(bad)


def test_formats_render_reversed_relabels_in_listed_order():
    f = get_format("numbered")
    text, labels, values = f.render("Worry.", "How accurate?", ("lo", "mid", "hi"), "reversed")
    assert labels == ("1", "2", "3") and values == (3.0, 2.0, 1.0)
    assert "1. hi\n2. mid\n3. lo" in text
    assert set(FORMATS) == {"numbered", "lettered", "rating"}
    with pytest.raises(ValueError, match="did you mean 'lettered'"):
        get_format("letered")
    own = get_format({"name": "mine", "template": "{statement}? {options}", "labels": ["x", "y", "z"]})
    assert own.render("S", "Q", ("a", "b", "c"), "forward")[1] == ("x", "y", "z")


# ---------------------------------------------------------------------------------------------- planted probabilities
def _planted(n_items=10, traits=("T1", "T2"), formats=("f1", "f2", "f3"), *, primacy=0.0, shift=None, seed=0):
    """A SelfReportResult whose answers follow a per-item 'true' value, plus a planted first-position preference
    (``primacy``: logit boost of the first-listed option) and a per-format shift of the keyed score."""
    rng = np.random.default_rng(seed)
    items = tuple(InstrumentItem(f"i{j}", f"s{j}", traits[j % len(traits)], 1 if j % 2 else -1)
                  for j in range(n_items * len(traits)))
    ins = Instrument("planted", items)
    truth = rng.uniform(1.5, 4.5, len(items))
    idx, fm, od, probs, vals = [], [], [], [], []
    for fi, f in enumerate(formats):
        for o in ("forward", "reversed"):
            values = np.arange(1, 6) if o == "forward" else np.arange(5, 0, -1)
            for j in range(len(items)):
                centre = truth[j] + items[j].key * (shift or {}).get(f, 0.0)
                logit = -((values - centre) ** 2) + rng.normal(0, 0.3, 5)
                logit[0] += primacy
                p = np.exp(logit - logit.max())
                idx.append(j), fm.append(f), od.append(o), probs.append(p / p.sum()), vals.append(values)
    return SelfReportResult(ins, np.array(idx), np.array(fm), np.array(od), np.array(probs), np.array(vals, float),
                            np.full(len(idx), 0.9))


def test_order_symmetry_flags_planted_primacy_and_not_an_unbiased_model():
    biased = order_symmetry(_planted(primacy=3.0))
    assert not biased.symmetric and all(biased.flagged.values())
    assert all(e.value < -0.3 for e in biased.position_bias.values())
    clean = order_symmetry(_planted(primacy=0.0, seed=1))
    assert clean.symmetric, clean.summary()
    assert all(e.contains(0.0) for e in clean.position_bias.values())
    assert biased.mirror_distance.value > clean.mirror_distance.value
    df = biased.to_dataframe()
    assert list(df["trait"]) == ["T1", "T2", "(all items)"] and df["flagged"].all()
    assert plot_order_symmetry(biased).axes


def test_format_effect_flags_a_shifted_format_and_not_equivalent_ones():
    fe = format_effect(_planted(shift={"f2": 0.8}))
    assert not fe.consistent and all(fe.flagged.values())
    assert all(fe.pairwise[(t, "f1", "f2")].value < 0 for t in ("T1", "T2"))
    same = format_effect(_planted(seed=2))
    assert same.consistent, same.summary()
    assert set(same.to_dataframe()["trait"]) == {"T1", "T2"} and len(same.pairwise_dataframe()) == 6
    assert plot_format_effect(fe).axes


def test_trait_scores_are_keyed_means_with_cis():
    r = _planted()
    est = r.trait_estimates()
    items = r.to_dataframe().groupby(["item", "trait"])["keyed"].mean().reset_index()
    for t, e in est.items():
        assert e.value == pytest.approx(items.loc[items["trait"] == t, "keyed"].mean())
        assert e.ci_low < e.value < e.ci_high and e.n == 10
    by = r.trait_scores(by=("format", "order"))
    assert len(by) == 2 * 3 * 2
    # p_by_value reorders the reversed rows: value v's probability regardless of where it was listed
    rev = np.where(r.order == "reversed")[0][0]
    assert r.p_by_value[rev, 4] == r.probs[rev, 0]
    assert plot_trait_scores(r).axes


# ---------------------------------------------------------------------------------------------- fake models
class _PlantedModel:
    """A real tiny model's tokenizer and chat template, with planted next-token logits: ``mode="primacy"`` puts
    +4 on the first-listed labels ("1"/"A"); ``mode="content"`` reads the prompt and puts +4 on whichever label
    lists "Moderately accurate", plus small per-prompt noise."""

    def __init__(self, base, mode):
        import dataclasses

        self._base, self.mode = base, mode
        self.facts = dataclasses.replace(base.facts, n_ctx=4096)  # planted logits: any prompt length

    def __getattr__(self, name):
        return getattr(self._base, name)

    def forward(self, toks, interventions=None, logits="last"):
        tok = self._base.tokenizer
        out = torch.zeros(toks.input_ids.shape[0], self._base.facts.d_vocab)
        for r in range(out.shape[0]):
            ids = toks.input_ids[r][toks.attention_mask[r].bool()].tolist()
            text = tok.decode(ids)
            g = torch.Generator().manual_seed(sum(ids) % 100000)
            out[r] = 0.3 * torch.randn(out.shape[1], generator=g)
            if self.mode == "primacy":
                targets = ["1", "A"]
            else:
                m = re.search(r"^\W*(\w)\W+Moderately accurate", text, re.M)
                targets = [m.group(1)]
            for t in targets:
                out[r, tok(t, add_special_tokens=False)["input_ids"][0]] += 4.0
        return out


def test_administer_flags_a_primacy_model_and_not_a_content_model(tiny_model):
    base = tiny_model("llama")
    ins = load_ipip_neo().subset(["A", "C"], n_per_trait=9, seed=0)
    biased = administer(_PlantedModel(base, "primacy"), ins, formats=("numbered", "lettered"))
    sym = order_symmetry(biased)
    assert not sym.symmetric and all(sym.flagged.values()), sym.summary()
    assert sym.overall.value < -1.0  # prefers value 1 forward and value 5 reversed
    content = administer(_PlantedModel(base, "content"), ins, formats=("numbered", "lettered"))
    sym2 = order_symmetry(content)
    assert sym2.symmetric, sym2.summary()
    assert abs(sym2.overall.value) < 0.05
    # the content model answers "Moderately accurate" (value 4): keyed scores 4 (+) or 2 (-)
    df = content.to_dataframe()
    assert (df["argmax_value"] == 4).all()
    assert np.allclose(df.loc[df["key"] > 0, "keyed"], 4, atol=0.3)
    assert np.allclose(df.loc[df["key"] < 0, "keyed"], 2, atol=0.3)


def test_administer_equals_the_koption_scorer_on_each_item(tiny_model):
    m = tiny_model("llama")  # a 256-character context: a short format and short anchors
    ins = load_ipip_neo().subset(["E"], n_per_trait=3, seed=0)
    ins = Instrument("short", ins.items, ("no", "rather no", "unsure", "rather yes", "yes"), "You?")
    fmt = get_format({"name": "short", "template": "{statement} {question}\n{options}", "labels": list("12345"),
                      "option_line": "{label} {anchor}"})
    r = administer(m, ins, formats=(fmt,), orders=("reversed",), system="Be you.")
    items = [build_item(it.text, ins.question, ins.anchors, fmt, "reversed") for it in ins.items]
    ref = koption_scores(m, items, system="Be you.")
    assert np.allclose(r.probs, ref.probs, atol=1e-6) and np.allclose(r.expected, ref.values, atol=1e-6)
    assert r.provenance.model_hash == m.weights_hash and "Extraversion" in r.summary()
    with pytest.raises(ValueError, match="needs both option orders"):
        order_symmetry(r)
    with pytest.raises(ValueError, match="at least 2 response formats"):
        format_effect(r)
