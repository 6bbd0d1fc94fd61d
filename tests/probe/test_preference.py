import numpy as np

from probe.eval_awareness import TASKS
from probe.preference import DIMENSIONS, build_preference_set, preference_probes, preference_records


def test_constructed_labels_hold_by_independent_checks():
    v = preference_records("verbosity", "hard")
    n_words = {lab: np.mean([len(r["output"].split()) for r in v if r["label"] == lab]) for lab in (0, 1, 2)}
    assert n_words[0] < n_words[1] < n_words[2]
    c = preference_records("complexity", "hard")
    wl = {lab: np.mean([np.mean([len(w) for w in r["output"].split()]) for r in c if r["label"] == lab]) for lab in (0, 1, 2)}
    assert wl[0] < wl[1] < wl[2]
    key = {q: opts[0] for _, q, opts, _ in TASKS}
    for r in preference_records("correctness", "easy"):
        assert (key[r["input"]] in r["output"]) == (r["label"] == 1)
    for d in DIMENSIONS:
        for split in ("easy", "hard"):
            ds = build_preference_set(d, split)
            counts = list(ds.class_counts().values())
            assert len(set(counts)) == 1 and len(counts) == (2 if split == "easy" else 3)


def test_preference_probes_final_layer_protocol_on_tiny(tiny_model):
    from probe.datasets import Example, LabelledPromptSet

    m = tiny_model("llama")  # byte-level tokenizer, 256-token context: short hand-made records
    ex = []
    for i in range(30):
        ex += [Example(f"q{i}?", 0, "It is so.", f"g{i}"), Example(f"q{i}?", 1, "It is so. Yes. Sure. Also this.", f"g{i}")]
    verb = LabelledPromptSet("verbosity_easy", ex, ("worse", "better"), read="last", chat=False)
    corr = LabelledPromptSet("correctness_easy", [Example(f"{i}+1=", int(j), f" {i + j}", f"g{i}")
                                                  for i in range(30) for j in (0, 1)], ("worse", "better"),
                             read="last", chat=False)
    r = preference_probes(m, ["verbosity", "correctness"], split="easy", layers="final", C=1.0, n_resamples=200,
                          datasets={"verbosity": verb, "correctness": corr})
    assert set(r.final) == {"verbosity", "correctness"}
    assert r.sweeps["verbosity"].layers == [1, 2]      # final layer + after the final norm
    assert r.final["verbosity"].value > 0.8            # length is readable even by a random model
    assert len(r.summary_table()) == 2
    assert r.summary().startswith("preference probes (easy split), AUROC: verbosity: final layer ")
    assert f"best layer {r.best['verbosity'][0]} {r.best['verbosity'][1].value:.2f}" in r.summary()


def test_hh_harmless_pairs_come_from_the_core_copy():
    from probe.preference import hh_harmless_set
    from workbench.datasets import hh_rlhf_harmless

    ds = hh_harmless_set()
    assert len(ds) == 600 and ds.class_counts() == {"worse": 300, "better": 300}
    recs = [e.meta["record"] for e in ds.examples]
    assert recs[0] == 0 and max(recs) == 385
    raw = hh_rlhf_harmless(limit=1)[0]
    assert ds.examples[0].output in raw["chosen"] and ds.examples[1].output in raw["rejected"]
    assert "workbench.datasets" in ds.source
