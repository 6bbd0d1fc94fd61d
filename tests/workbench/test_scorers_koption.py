"""K-option scorer: against teacher-forced references, the A/B scorer, and its format errors."""

import numpy as np
import pytest
import torch

from workbench.interventions import add
from workbench.scorers import (
    ABItem,
    KOptionFormatError,
    KOptionItem,
    ab_scores,
    continuation_logprobs,
    get_scorer,
    koption_scores,
    plot_koption,
)

LIKERT = ("1", "2", "3", "4", "5")
WORDS = ("Strongly agree", "Agree", "Neutral", "Disagree", "Strongly disagree")
PROMPTS = ["I worry about things. How accurate is that of you?", "I make friends easily. Rate it.",
           "Pick an answer.", "Do you like rain?"]


def _teacher_forced(m, text, options, rule):
    """Reference by teacher forcing on decoded text, written independently of the scorer's trie: one batched
    ``continuation_logprobs`` call per item, the last token of each continuation read off its per-token values."""
    tok = m.tokenizer
    seqs = [tok(text + o, add_special_tokens=False)["input_ids"] for o in options]
    c = 0
    while all(len(s) > c for s in seqs) and len({s[c] for s in seqs}) == 1:
        c += 1
    context = tok.decode(seqs[0][:c])
    steps = []  # (option, depth, alternatives at that depth)
    for o, s in enumerate(seqs):
        for d in range(c, len(s)):
            alts = sorted({t[d] for t in seqs if len(t) > d and t[:d] == s[:d]})
            if rule == "branch" and len(alts) == 1:
                continue  # forced token
            steps.append((o, d, alts))
    conts = list({(tuple(seqs[o][:d]), a): (seqs[o], d, a) for o, d, alts in steps for a in alts}.values())
    texts = [tok.decode(s[c:d] + [a]) for s, d, a in conts]
    r = continuation_logprobs(m, [context] * len(texts), texts, chat=False)
    assert [int(n) for n in r.n_tokens] == [d - c + 1 for _, d, _ in conts]  # decoded text re-tokenises the same
    lp = {(tuple(s[:d]), a): float(pt[-1]) for (s, d, a), pt in zip(conts, r.per_token)}
    scores = np.zeros(len(seqs))
    for o, d, alts in steps:
        s = seqs[o]
        here = lp[(tuple(s[:d]), s[d])]
        scores[o] += here - np.logaddexp.reduce([lp[(tuple(s[:d]), a)] for a in alts]) if rule == "branch" else here
    p = np.exp(scores - scores.max())
    return p / p.sum()


@pytest.mark.parametrize("rule", ["branch", "sequence"])
@pytest.mark.parametrize("options", [LIKERT, WORDS], ids=["likert", "multi-token"])
def test_koption_equals_teacher_forced_reference(tiny_model, rule, options):
    m = tiny_model("llama")
    items = [KOptionItem(p, options) for p in PROMPTS[:2]]
    r = koption_scores(m, items, rule=rule, assistant_prefix="Answer: ")
    assert r.probs.shape == (2, 5) and np.allclose(r.probs.sum(1), 1)
    for i, p in enumerate(PROMPTS[:2]):
        ref = _teacher_forced(m, m.format_chat(p) + "Answer: ", options, rule)
        assert np.abs(r.probs[i] - ref).max() < 1e-5, (i, r.probs[i], ref)
    assert np.allclose(r.values, r.probs @ np.arange(1, 6))
    assert (r.argmax == r.probs.argmax(1)).all()
    assert r.aggregate.ci_low <= r.aggregate.value <= r.aggregate.ci_high


def test_koption_mass_is_the_full_softmax_on_the_first_branch_tokens(tiny_model):
    m = tiny_model("llama")
    r = koption_scores(m, [KOptionItem(p, WORDS) for p in PROMPTS[:2]], assistant_prefix="Answer: ")
    tok = m.tokenizer
    for i, p in enumerate(PROMPTS[:2]):
        text = m.format_chat(p) + "Answer: "
        logits = m.forward(m.tokenize(text, chat=False, prepend_bos=False), logits="last")[0].float()
        firsts = {tok(text + o, add_special_tokens=False)["input_ids"][len(tok(text, add_special_tokens=False)
                                                                            ["input_ids"])] for o in WORDS}
        assert len(firsts) == 4  # "Strongly ..." shares its first token
        assert abs(r.mass[i] - float(torch.softmax(logits, -1)[list(firsts)].sum())) < 1e-6


def test_koption_with_two_options_equals_ab(tiny_model):
    m = tiny_model("gpt2")
    ab = [ABItem("Pick one.\n(A) red\n(B) blue", "(A)", "(B)"), ABItem("Is it so?", " Yes", " No"),
          ABItem("Which?\n(A) up\n(B) down", "(B)", "(A)")]
    r = koption_scores(m, [KOptionItem(it.question, (it.matching, it.not_matching)) for it in ab])
    assert np.allclose(r.probs[:, 0], ab_scores(m, ab).values, atol=1e-6)


def test_koption_option_order_in_the_tuple_only_permutes(tiny_model):
    """The listed order in the prompt is the caller's; permuting the options tuple (with its values) permutes
    the probabilities and leaves the expected value unchanged."""
    m = tiny_model("neox")
    fwd = koption_scores(m, [KOptionItem(p, LIKERT, (1, 2, 3, 4, 5)) for p in PROMPTS])
    rev = koption_scores(m, [KOptionItem(p, LIKERT[::-1], (5, 4, 3, 2, 1)) for p in PROMPTS])
    assert np.allclose(fwd.probs, rev.probs[:, ::-1], atol=1e-6)
    assert np.allclose(fwd.values, rev.values, atol=1e-6)
    assert np.allclose(fwd.argmax_value, rev.argmax_value)


def test_koption_raw_text_interventions_registry_and_outputs(tiny_model):
    m = tiny_model("gpt2")
    items = [KOptionItem(p + "\nAnswer:", (" A", " B", " C"), (0, 1, 0), meta={"id": i}) for i, p in enumerate(PROMPTS)]
    base = koption_scores(m, items, chat=False)
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(0))
    steered = get_scorer("koption", model=m, chat=False)(items, interventions=add("resid_post.1", v, alpha=5.0))
    assert np.abs(steered.probs - base.probs).max() > 1e-3
    assert np.allclose(base.values, base.probs[:, 1])
    df = base.to_dataframe()
    assert {"expected", "p_0", "p_1", "p_2", "mass", "argmax", "argmax_value"} <= set(df.columns)
    assert df["meta"].iloc[2] == {"id": 2}
    assert "K=3" in base.summary() and base.provenance.model_hash == m.weights_hash
    fig = plot_koption(base)
    assert fig.axes
    # raw text with prepend_bos=True: the context is BOS + the common prefix of prompt + option
    raw = koption_scores(m, items[:2], chat=False, prepend_bos=True)
    tok = m.tokenizer
    seqs = [tok(items[0].prompt + o, add_special_tokens=False)["input_ids"] for o in items[0].options]
    ctx, firsts = seqs[0][:-1], [s[-1] for s in seqs]
    assert all(s[:-1] == ctx for s in seqs)
    logits = m.forward(torch.tensor([[m.facts.bos_token_id] + ctx]), logits="last")[0].float().cpu()
    assert np.allclose(raw.probs[0], torch.softmax(logits[firsts], -1).numpy(), atol=1e-6)


def test_koption_format_errors(tiny_model):
    m = tiny_model("llama")
    with pytest.raises(KOptionFormatError, match="token prefix of option '10'"):
        koption_scores(m, [KOptionItem("Pick", ("1", "10", "2"))] * 2)
    with pytest.raises(KOptionFormatError, match="same number of options"):
        koption_scores(m, [KOptionItem("Pick", ("A", "B")), KOptionItem("Pick", ("A", "B", "C"))])
    with pytest.raises(KOptionFormatError, match="distinct"):
        KOptionItem("Pick", ("A", "A", "B"))
    with pytest.raises(KOptionFormatError, match="one value per option"):
        KOptionItem("Pick", ("A", "B"), (1, 2, 3))
    with pytest.raises(KOptionFormatError, match="at least 2 options"):
        KOptionItem("Pick", ("A",))
    with pytest.raises(KOptionFormatError, match="single string"):
        KOptionItem("Pick", "AB")
    with pytest.raises(KOptionFormatError, match="rule must be one of"):
        koption_scores(m, [KOptionItem("Pick", ("A", "B"))] * 2, rule="mean")
    with pytest.raises(KOptionFormatError, match="system= needs chat=True"):
        koption_scores(m, [KOptionItem("Pick", ("A", "B"))] * 2, chat=False, system="x")


@pytest.mark.smollm
def test_smollm_likert_equals_teacher_forced(smollm):
    for options in (LIKERT, WORDS):
        r = koption_scores(smollm, [KOptionItem(p, options) for p in PROMPTS[:2]], assistant_prefix="Answer: ")
        ref = _teacher_forced(smollm, smollm.format_chat(PROMPTS[0]) + "Answer: ", options, "branch")
        assert np.abs(r.probs[0] - ref).max() < 1e-4
