"""Batch jobs: ``python -m probe <command> [options]``; each prints its tables and saves results.

- ``eval-awareness``: on a model (default SmolLM2-135M-Instruct),
  (1) Nguyen et al.'s contrastive set (``--shared``), read at the answer token: per-layer
  AUROC with CIs, held-out answer-letter templates (a probe that reads the letter, not what it
  answers, falls below chance there), label-shuffle and random-direction controls, and the
  token-artifact control (answer removed: read at the last prompt token);
  (2) the project's framing set on raw prompts (last prompt token): sweep with controls and
  held-out framing templates, and the "(A)"/"(B)" token-artifact control;
  (3) transfer: the framing probe's score on the contrastive set's test-framed questions vs
  natural Dolly/WildChat prompts (``--shared``);
  (4) Probe-Rewrite-Evaluate: score shift of benchmark-style questions rewritten into deploy
  style (``--shared``).
  Activations are collected once per set (all layers) and cached under ``<out>/activations``,
  so a rerun (other statistics, other seeds) costs no forward passes.
- ``preference``: the six dimensions, easy and/or hard split.

Results are written to ``--out`` as CSV tables, DirectionSets, PNG plots and ``report.json``.
The same work is available to the experiments package as functions:
:func:`run_eval_awareness` (this job) and :func:`probe.eval_awareness.eval_awareness_probe`.
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
    n_shift: int = 60
    seed: int = 0
    layers: str = "all"
    n_resamples: int = 2000
    batch_size: int = 16
    threads: int = 2


def _save_fig(fig, path: Path) -> None:
    fig.savefig(path, dpi=110)


def _est(e) -> dict:
    return {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "method": e.method, "n": e.n,
            "p_value": e.p_value}


def _sweep_report(sw, method: str = "logistic") -> dict:
    L = sw.best_layer(method)
    i = sw.layers.index(L)
    rep = {"best_layer": L, "auroc": _est(sw.estimates(method)[i]),
           "controls_at_chance_holm": sw.controls_at_chance(method),
           "label_shuffle_ci_contains_half_layers": sw.layers_with_ci_containing(0.5, method, "label_shuffle")
           if "label_shuffle" in sw.conditions else None,
           "per_layer": sw.layer_table(method).to_dict(orient="list")}
    for c in ("held_out_templates", "label_shuffle"):
        if c in sw.conditions:
            rep[c] = _est(sw.estimates(method, c)[i])
    if "random_direction" in sw.conditions:
        rep["random_direction"] = _est(sw.estimates("random", "random_direction")[i])
    return rep


def _artifact_report(art) -> dict:
    return {"layers": art.layers, "auroc": {c: [_est(e) for e in v] for c, v in art.auroc.items()},
            "explained_fraction": [None if e is None else _est(e) for e in art.explained]}


def run_eval_awareness(job: EvalAwarenessJob, model=None) -> dict:
    """The ``eval-awareness`` job (module docstring); returns the report it writes."""
    import numpy as np
    import pandas as pd
    import torch

    from .activations import collect_cached
    from .controls import token_artifact_control
    from .datasets import LabelledPromptSet, load_contrastive, load_prompt_list
    from .eval_awareness import eval_awareness_probe, framing_set, framing_shift
    from .metrics import auroc_estimate
    from .plots import plot_eval_awareness, plot_framing_shift, plot_layer_sweep, plot_token_artifact
    from .sweep import layer_sweep

    torch.set_num_threads(job.threads)
    pd.set_option("display.width", 200)
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "activations"
    if model is None:
        from workbench.models import load

        model = load(job.model, backend="tl")
    layers = None if job.layers == "all" else [int(x) for x in job.layers.split(",")]
    final = model.facts.n_layers - 1
    report: dict = {"model": model.name, "weights_hash": model.weights_hash, "job": job.__dict__}
    t0 = time.time()

    def stamp(what: str) -> None:
        print(f"[{time.time() - t0:.0f}s] {what}", flush=True)

    kw = dict(layers=layers, batch_size=job.batch_size, progress=True)
    ea = Path(job.shared) / "eval_awareness" if job.shared else None
    if ea is not None:
        con = load_contrastive(ea / "contrastive_dataset.json")
        if job.n_contrastive:
            con = con.subset(range(2 * job.n_contrastive))
        acts = collect_cached(model, con, cache, read="last", **kw)
        removed = collect_cached(model, con, cache, read="last_prompt", **kw)
        stamp("contrastive set: activations")
        sw = layer_sweep(acts, seed=job.seed, n_resamples=job.n_resamples)
        best = sw.best_layer()
        art = token_artifact_control(model, con, artifact=None, layers=sorted({best, final}), seed=job.seed,
                                     n_resamples=job.n_resamples, removed=removed, present=acts, cache_dir=cache)
        print("\n== (1) Nguyen et al. contrastive set (../shared), read at the answer token ==")
        print(sw.layer_table().to_string(index=False))
        print(sw.summary())
        print(art.summary())
        sw.to_dataframe().to_csv(out / "contrastive_sweep.csv", index=False)
        art.to_dataframe().to_csv(out / "contrastive_artifact.csv", index=False)
        _save_fig(plot_layer_sweep(sw), out / "contrastive_sweep.png")
        _save_fig(plot_token_artifact(art), out / "contrastive_artifact.png")
        report["contrastive"] = {**_sweep_report(sw), "artifact": _artifact_report(art),
                                 "n_examples": acts.n, "notes": sw.notes}
        stamp("contrastive set: done")

    ds = framing_set(n_topics=job.n_topics, seed=job.seed)
    fr_acts = collect_cached(model, ds, cache, read="last_prompt", **kw)
    stamp("framing set: activations")
    res = eval_awareness_probe(model, ds, activations=fr_acts, seed=job.seed, n_resamples=job.n_resamples,
                               batch_size=job.batch_size, cache_dir=cache)
    print("\n== (2) project framing set, raw prompts (last prompt token) ==")
    print(res.sweep.layer_table().to_string(index=False))
    print(res.summary())
    res.to_dataframe().to_csv(out / "framing_sweep.csv", index=False)
    _save_fig(plot_eval_awareness(res), out / "framing_sweep.png")
    if res.artifact is not None:
        _save_fig(plot_token_artifact(res.artifact), out / "framing_artifact.png")
        res.artifact.to_dataframe().to_csv(out / "framing_artifact.csv", index=False)
    res.directions().save(out / "eval_awareness_directions")
    report["framing"] = {**_sweep_report(res.sweep), "scoring_layer": res.layer, "n_examples": fr_acts.n,
                         "artifact": _artifact_report(res.artifact) if res.artifact else None}
    stamp("framing set: done")
    if ea is not None:
        rng = np.random.default_rng(job.seed)
        recs = json.loads((ea / "contrastive_dataset.json").read_text())
        qs = [r["question"] for r in recs]
        qs = [qs[i] for i in rng.choice(len(qs), min(job.n_transfer, len(qs)), replace=False)]
        dep = []
        for f in ("contrastive_dataset_dolly.json", "contrastive_dataset_wildchat.json"):
            d = load_prompt_list(ea / "deploy_controls_marinomaria" / f, 0)
            dep += [d.examples[i] for i in rng.choice(len(d), min(job.n_transfer // 2, len(d)), replace=False)]
        from .datasets import Example

        tr_set = LabelledPromptSet("transfer_shared", [Example(q, 1, None, f"q{i}", "contrastive_question")
                                                       for i, q in enumerate(qs)] + dep, ("deploy", "test"),
                                   read="last_prompt")
        tr_acts = collect_cached(model, tr_set, cache, **kw)  # every layer: the scoring layer may change
        raw = res.probe.decision(tr_acts.layer(res.layer))
        tr = auroc_estimate(raw, tr_acts.labels, ci="bootstrap", n_resamples=job.n_resamples, seed=job.seed)
        norm = (raw - res.deploy_mean) / (res.test_mean - res.deploy_mean)
        print("\n== (3) transfer: the framing probe on ../shared test-framed questions vs Dolly/WildChat prompts ==")
        print(f"layer {res.layer}: AUROC {tr}; mean normalised score (0 = deploy, 1 = test framing) "
              f"test-framed {norm[tr_acts.labels == 1].mean():.2f}, natural {norm[tr_acts.labels == 0].mean():.2f}")
        stamp("transfer: done")
        sh_qs = [r["question"] for r in recs][: job.n_shift]
        fs = framing_shift(res, model, sh_qs, seed=job.seed, n_resamples=job.n_resamples, batch_size=job.batch_size,
                           cache_dir=cache, collect_layers=layers if layers is not None else "all")
        print("\n== (4) Probe-Rewrite-Evaluate: benchmark-style questions rewritten into deploy style ==")
        print(f"mean score shift (rewrite - original) {fs.mean_shift}; fraction lower {fs.fraction_lower}")
        fs.to_dataframe().to_csv(out / "framing_shift.csv", index=False)
        _save_fig(plot_framing_shift(fs), out / "framing_shift.png")
        report["transfer"] = {"layer": res.layer, "auroc": _est(tr), "n_test_framed": len(qs), "n_natural": len(dep)}
        report["framing_shift"] = {"mean_shift": _est(fs.mean_shift), "fraction_lower": _est(fs.fraction_lower),
                                   "n": len(sh_qs)}
        stamp("framing shift: done")
    report["seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
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
                       type=(int if f.type in ("int", "int | None") else str), help=f"default: {f.default}")
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
