"""Batch jobs: ``python -m probe <command> [options]``; each prints its tables and saves results.

- ``eval-awareness``: on a model (default SmolLM2-135M-Instruct), (1) Nguyen et al.'s
  contrastive set read at the answer token, with held-out answer-letter templates and the
  token-artifact control (answer removed); (2) the project's framing set on raw prompts
  (sweep + controls + "(A)"/"(B)" artifact); (3) transfer: the framing probe's score on
  test-framed questions vs natural Dolly/WildChat prompts; (4) framing shift of
  benchmark-style questions rewritten into deploy style. Needs ``--shared`` for (1), (3), (4).
- ``preference``: the six dimensions, easy and/or hard split.

Results are written to ``--out`` as CSV tables, DirectionSets and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class EvalAwarenessJob:
    model: str = "smollm2-135m-instruct"
    shared: str | None = None
    out: str = "runs/probe_eval_awareness"
    n_topics: int = 16
    n_contrastive: int | None = None
    n_transfer: int = 100
    seed: int = 0
    layers: str = "all"


def _save_fig(fig, path: Path) -> None:
    fig.savefig(path, dpi=110)


def run_eval_awareness(job: EvalAwarenessJob) -> dict:
    import numpy as np
    import torch

    from workbench.models import load

    from .activations import collect
    from .controls import token_artifact_control
    from .datasets import LabelledPromptSet, load_contrastive, load_prompt_list
    from .eval_awareness import eval_awareness_probe, framing_set, framing_shift, score_prompts
    from .metrics import auroc_estimate
    from .plots import plot_eval_awareness, plot_framing_shift, plot_layer_sweep, plot_token_artifact
    from .sweep import layer_sweep

    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load(job.model, backend="tl")
    layers = None if job.layers == "all" else [int(x) for x in job.layers.split(",")]
    report: dict = {}
    t0 = time.time()
    if job.shared:
        ea = Path(job.shared) / "eval_awareness"
        con = load_contrastive(ea / "contrastive_dataset.json")
        if job.n_contrastive:
            con = con.subset(range(2 * job.n_contrastive))
        acts = collect(model, con, layers=layers, progress=True)
        sw = layer_sweep(acts, seed=job.seed, progress=True)
        print("\n== (1) Nguyen et al. contrastive set, read at the answer token ==")
        print(sw.summary())
        sw.to_dataframe().to_csv(out / "contrastive_sweep.csv", index=False)
        _save_fig(plot_layer_sweep(sw), out / "contrastive_sweep.png")
        best = sw.best_layer()
        art = token_artifact_control(model, con, artifact=None, layers=sorted({best, model.n_layers - 1}), seed=job.seed)
        print(art.summary())
        art.to_dataframe().to_csv(out / "contrastive_artifact.csv", index=False)
        _save_fig(plot_token_artifact(art), out / "contrastive_artifact.png")
        report["contrastive"] = {"best_layer": best, "auroc": str(sw.estimates()[sw.layers.index(best)]),
                                 "held_out_templates": str(sw.estimates("logistic", "held_out_templates")[sw.layers.index(best)]),
                                 "controls_at_chance": sw.controls_at_chance(), "artifact": art.summary()}
        print(f"[{time.time() - t0:.0f}s]")
    ds = framing_set(n_topics=job.n_topics, seed=job.seed)
    res = eval_awareness_probe(model, ds, layers=layers, seed=job.seed, progress=True)
    print("\n== (2) project framing set, raw prompts (last prompt token) ==")
    print(res.summary())
    res.to_dataframe().to_csv(out / "framing_sweep.csv", index=False)
    _save_fig(plot_eval_awareness(res), out / "framing_sweep.png")
    if res.artifact is not None:
        _save_fig(plot_token_artifact(res.artifact), out / "framing_artifact.png")
        res.artifact.to_dataframe().to_csv(out / "framing_artifact.csv", index=False)
    res.directions().save(out / "eval_awareness_directions")
    L = res.layer
    report["framing"] = {"layer": L, "auroc": str(res.sweep.estimates()[res.sweep.layers.index(L)]),
                         "controls_at_chance": res.sweep.controls_at_chance(),
                         "artifact": res.artifact.summary() if res.artifact else None}
    print(f"[{time.time() - t0:.0f}s]")
    if job.shared:
        ea = Path(job.shared) / "eval_awareness"
        rng = np.random.default_rng(job.seed)
        import json as _json

        qs = [r["question"] for r in _json.loads((ea / "contrastive_dataset.json").read_text())]
        qs = [qs[i] for i in rng.choice(len(qs), min(job.n_transfer, len(qs)), replace=False)]
        dep = []
        for f in ("contrastive_dataset_dolly.json", "contrastive_dataset_wildchat.json"):
            d = load_prompt_list(ea / "deploy_controls_marinomaria" / f, 0)
            dep += [d.examples[i].prompt for i in rng.choice(len(d), min(job.n_transfer // 2, len(d)), replace=False)]
        s_test = score_prompts(res, model, qs)
        s_dep = score_prompts(res, model, dep)
        tr = auroc_estimate(np.r_[s_test.raw, s_dep.raw], np.r_[np.ones(len(qs)), np.zeros(len(dep))])
        print("\n== (3) transfer: framing probe scores test-framed questions vs Dolly/WildChat prompts ==")
        print(f"layer {L}: AUROC {tr}; mean normalised score test-framed {s_test.mean()} vs deploy {s_dep.mean()}")
        fs = framing_shift(res, model, qs[: min(60, len(qs))], seed=job.seed)
        print("\n== (4) Probe-Rewrite-Evaluate: benchmark-style questions rewritten into deploy style ==")
        print(f"mean score shift (rewrite - original) {fs.mean_shift}; fraction lower {fs.fraction_lower}")
        fs.to_dataframe().to_csv(out / "framing_shift.csv", index=False)
        _save_fig(plot_framing_shift(fs), out / "framing_shift.png")
        report["transfer"] = {"auroc": str(tr), "mean_shift": str(fs.mean_shift), "fraction_lower": str(fs.fraction_lower)}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\ndone in {time.time() - t0:.0f}s; results in {out}")
    return report


def run_preference(model_name: str, split: str, out: str, limit: int | None, seed: int) -> None:
    import torch

    from workbench.models import load

    from .plots import plot_preference
    from .preference import preference_probes

    torch.set_num_threads(min(2, torch.get_num_threads()))
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    model = load(model_name, backend="tl")
    for sp in (["easy", "hard"] if split == "both" else [split]):
        r = preference_probes(model, split=sp, limit=limit, seed=seed, progress=True)
        print(f"\n== preference dimensions, {sp} split ==")
        print(r.summary_table().to_string())
        r.to_dataframe().to_csv(o / f"preference_{sp}.csv", index=False)
        _save_fig(plot_preference(r), o / f"preference_{sp}.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m probe", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval-awareness")
    for f in EvalAwarenessJob.__dataclass_fields__.values():
        e.add_argument("--" + f.name.replace("_", "-"), default=f.default,
                       type=(int if f.type in ("int", "int | None") else str))
    q = sub.add_parser("preference")
    q.add_argument("--model", default="smollm2-135m-instruct")
    q.add_argument("--split", default="both", choices=["easy", "hard", "both"])
    q.add_argument("--out", default="runs/probe_preference")
    q.add_argument("--limit", type=int, default=None)
    q.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.cmd == "eval-awareness":
        run_eval_awareness(EvalAwarenessJob(**{k: v for k, v in vars(a).items() if k != "cmd"}))
    else:
        run_preference(a.model, a.split, a.out, a.limit, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
