import json

import pytest
import torch

from probe.activations import collect, encode_example
from probe.datasets import (
    DatasetError,
    Example,
    LabelledPromptSet,
    load_caa_file,
    load_contrastive,
    load_dataset,
    load_mrm,
    load_persona,
    load_preference_pairs,
    read_records,
)


def _write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(json.dumps(obj) if not name.endswith(".jsonl") else "".join(json.dumps(r) + "\n" for r in obj))
    return p


def test_mrm_hard_and_bad_label_message(tmp_path):
    p = _write(tmp_path, "m.jsonl", [{"input": "q", "output": "a", "label": 2}, {"input": "q2", "output": "b", "label": "0"}])
    ds = load_mrm(p, split="hard")
    assert list(ds.labels) == [2, 0] and ds.read == "last"
    with pytest.raises(DatasetError, match=r"m.jsonl record 0: field 'label' is 2; the easy split expects 0 or 1"):
        load_mrm(p, split="easy")
    bad = _write(tmp_path, "b.json", [{"input": "q", "label": 1}])
    with pytest.raises(DatasetError, match=r"b.json record 0: missing field 'output'"):
        load_mrm(bad)
    broken = tmp_path / "c.jsonl"
    broken.write_text('{"input": "q", "output": "a", "label": 1}\n{oops\n')
    with pytest.raises(DatasetError, match="line 2 is not valid JSON"):
        read_records(broken)


def test_contrastive_pairs_share_a_group_and_detect_format(tmp_path):
    p = _write(tmp_path, "c.json", [{"question": "Q?\n(A) Yes\n(B) No", "positive": "(A)", "negative": "(B)"},
                                    {"question": "R?", "positive": "B", "negative": "(A)"}])
    ds = load_dataset(p)
    assert len(ds) == 4 and list(ds.labels) == [1, 0, 1, 0]
    assert ds.groups[0] == ds.groups[1] != ds.groups[2]
    assert ds.examples[2].output == "(B)" and ds.templates[2] == "pos=(B)"
    bad = _write(tmp_path, "d.json", [{"question": "Q", "positive": "(C)", "negative": "(A)"}])
    with pytest.raises(DatasetError, match=r"field 'positive' is '\(C\)'; expected an answer letter"):
        load_contrastive(bad)


def test_caa_persona_hh(tmp_path):
    (tmp_path / "beh").mkdir()
    p = _write(tmp_path / "beh", "g.json", [{"question": "Q", "answer_matching_behavior": "(B)",
                                            "answer_not_matching_behavior": "(A)"}])
    ds = load_caa_file(p)
    assert [e.output for e in ds.examples] == ["(B)", "(A)"] and ds.name == "beh"
    assert list(ds.labels) == [1, 0] and ds.groups[0] == ds.groups[1]  # matching = 1, one group per question
    half = _write(tmp_path / "beh", "h.json", [{"question": "Q", "answer_matching_behavior": "(B)"}])
    with pytest.raises(DatasetError, match="missing field 'answer_not_matching_behavior'"):
        load_caa_file(half)
    pp = _write(tmp_path, "p.jsonl", [{"question": "Is it?", "statement": "s", "answer_matching_behavior": " No",
                                       "answer_not_matching_behavior": " Yes"}])
    assert list(load_persona(pp).labels) == [0]
    hh = _write(tmp_path, "h.jsonl", [{"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}])
    ds = load_preference_pairs(hh)
    assert ds.examples[0].prompt == [{"role": "user", "content": "hi"}] and ds.examples[1].output == "go away"


def test_read_positions_match_manual_forward(tiny_model):
    m = tiny_model("llama")
    ds = LabelledPromptSet("t", [Example("hello world", 1, "(A)", "g"), Example("hi", 0, "(B)", "g")], read="last")
    for read, sl in (("last", slice(-1, None)), ("mean_output", slice(-3, None)), ("last_prompt", None)):
        a = collect(m, ds, read=read, layers=[1], chat=False)
        text = "hello world" + ("(A)" if sl is not None else "")
        _, c = m.run_with_cache(text, ["resid_post.1"])
        ref = c["resid_post.1"][0, sl].mean(0) if sl is not None else c["resid_post.1"][0, -1]
        torch.testing.assert_close(a.x[0, 0], ref.cpu(), atol=1e-5, rtol=1e-5)
    chat = collect(m, ds, read="last", layers=[0])
    _, c = m.run_with_cache(m.format_chat("hi") + "(B)", ["resid_post.0"], prepend_bos=False)
    torch.testing.assert_close(chat.x[0, 1], c["resid_post.0"][0, -1].cpu(), atol=1e-5, rtol=1e-5)
    e = encode_example(m, ds.examples[0], "mean_output", chat=False)
    assert e.span == (11, 14) and e.joined


def test_output_read_without_output_is_explained():
    with pytest.raises(DatasetError, match="has no output; use read='last_prompt'"):
        LabelledPromptSet("t", [Example("q", 0)], read="last")


def test_shared_eval_awareness_files_load(shared_data):
    ea = shared_data / "eval_awareness"
    con = load_dataset(ea / "contrastive_dataset.json")
    assert len(con) == 408 and con.class_counts() == {"negative": 204, "positive": 204}
    ab = load_dataset(ea / "AB_ambiguous.json")
    assert len(ab) == 316 and ab.label_names == ("deploy", "test")


def test_activations_save_load_and_cache(tiny_model, tmp_path):
    from probe.activations import Activations, collect, collect_cached
    from probe.datasets import Example, LabelledPromptSet

    m = tiny_model("llama")
    ds = LabelledPromptSet("s", [Example("a b c", 0, output="(A)", group="g0", template="t"),
                                 Example("a b c", 1, output="(B)", group="g0", template="t"),
                                 Example("d e", 0, output="(A)", group="g1", template="u"),
                                 Example("d e", 1, output="(B)", group="g1", template="u")], chat=False)
    a = collect(m, ds, read="last_prompt")  # the two examples of a pair share their prompt: computed once
    assert any("computed once" in n for n in a.notes)
    ref = collect(m, ds.subset([0, 2]), read="last_prompt")
    torch.testing.assert_close(a.x[:, [0, 2]], ref.x)
    torch.testing.assert_close(a.x[:, 1], a.x[:, 0])
    b = Activations.load(a.save(tmp_path / "a.safetensors"))
    torch.testing.assert_close(a.x, b.x)
    assert list(b.groups) == list(a.groups) and b.read == a.read and b.provenance.model_hash == a.provenance.model_hash
    c1 = collect_cached(m, ds, tmp_path / "cache", read="last_prompt")
    c2 = collect_cached(m, ds, tmp_path / "cache", read="last_prompt")
    torch.testing.assert_close(c1.x, c2.x)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    collect_cached(m, ds, tmp_path / "cache", read="last")  # another read position: another file
    assert len(list((tmp_path / "cache").iterdir())) == 2
    (f,) = [p for p in (tmp_path / "cache").iterdir() if p.stat().st_mtime_ns == min(
        q.stat().st_mtime_ns for q in (tmp_path / "cache").iterdir())]
    f.write_bytes(f.read_bytes()[:50])  # a truncated file is collected again, not trusted
    c3 = collect_cached(m, ds, tmp_path / "cache", read="last_prompt")
    torch.testing.assert_close(c3.x, c1.x)
    assert Activations.load(f).n == c1.n
