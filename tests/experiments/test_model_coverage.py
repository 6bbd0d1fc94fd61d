"""Studies fit themselves to the model at hand: the context, the tokenizer's answers, the chat template."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from experiments.study import chat_note, fits_context


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    """tiny-llama without a chat template (its tokenizer files copied and the template removed)."""
    from workbench.models import load

    src = load("tiny-llama").source
    d = tmp_path_factory.mktemp("plain") / "tiny-llama-plain"
    shutil.copytree(src, d)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    m = load(str(d))
    assert not m.facts.has_chat_template
    return m


def test_fits_context_counts_tokens_as_tokenize_does(tiny_model):
    m = tiny_model("llama")  # byte-level: one token per byte, no BOS; context 256
    n_ctx = m.facts.n_ctx
    assert n_ctx == 256 and len(m.tokenize("abc").real_tokens(0)) == 3
    assert fits_context(m, ["a" * 256, "a" * 257, "a" * 250]) == [True, False, True]
    assert fits_context(m, ["a" * 250], reserve=6) == [True] and fits_context(m, ["a" * 250], reserve=7) == [False]
    assert fits_context(m, ["a" * 250], continuations=["bcdefg"]) == [True]
    assert fits_context(m, ["a" * 250], continuations=["bcdefgh"]) == [False]
    chat = len(m.tokenize("x", chat=True).real_tokens(0))  # the template's own tokens count too
    assert fits_context(m, ["x" * (n_ctx - chat + 1)], chat=True) == [True]
    assert fits_context(m, ["x" * (n_ctx - chat + 2)], chat=True) == [False]


def test_a_model_without_a_chat_template_gets_plain_prompts_or_a_skip(plain_model, tiny_model):
    from experiments.studies import caa, persona_asr, personas

    assert chat_note(tiny_model("llama")) == []
    (note,) = chat_note(plain_model)
    assert "has no chat template: prompts were given as plain text" in note
    ctx = SimpleNamespace(progress=False)  # the studies stop before they use the run
    for study, cfg in ((personas, personas.PersonaStudy()), (persona_asr, persona_asr.PersonaASRStudy()),
                       (caa, caa.CAAStudy())):
        res = study.compute(ctx, plain_model, cfg)
        assert res.crosscheck is None and res.description.startswith("Skipped: ")
        assert "has no chat template" in res.payload["skipped"]


@pytest.mark.slow
def test_smoke_on_a_model_without_a_chat_template(plain_model, tmp_path):
    from experiments import run_experiment

    out = tmp_path / "smoke"
    run_experiment("smoke", out=out, preset="quick", overrides=[f'model.name="{plain_model.source}"'], progress=False)
    secs = json.loads((out / "steps" / "refusal" / "_sections.json").read_text())
    assert secs[0]["summary"].startswith("Share of completions") and "no chat template" in secs[0]["notes"][0]


def test_one_token_filters_and_resolution_stages(tiny_model):
    from circuits import resolution_stages, single_token_facts, usable_pairs

    m = tiny_model("gpt2")  # byte-level: " Paris" is 6 tokens, "a" one
    keep, notes = single_token_facts(m, [("The capital of France is", " Paris"), ("x", "a")])
    assert keep == [("x", "a")] and notes == ["dropped 1 of 2 facts whose answer is not one token for tiny-gpt2: "
                                              "[' Paris']"]
    keep, notes = usable_pairs(m, [("a", "b"), (" France", "c"), ("d", " Paris")])
    assert keep == [("a", "b")] and "dropped 2 of 3 pairs" in notes[0]
    # ranks [stages=4, prompts=3, positions=3] at each prompt's last real token (prompt 1 is left-padded)
    rank = torch.full((4, 3, 3), 5)
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 1, 1]])
    rank[:, 0, 2] = torch.tensor([3, 0, 0, 0])   # top-1 from stage 1 on
    rank[:, 1, 2] = torch.tensor([0, 2, 0, 0])   # top-1 at 0, lost, regained at 2: resolves at 2
    rank[:, 2, 2] = torch.tensor([0, 0, 0, 1])   # not top-1 at the output: one past the last stage
    lens = SimpleNamespace(target_rank=rank, mask=mask)
    assert resolution_stages(lens).tolist() == [1.0, 2.0, 4.0]
