"""The Ray executor on a probe batch job: 1 vs 2 workers (one thread each), the same grid.

The job: ``workbench run preference-dimensions`` on each model, two preference dimensions (labelled sets; records
too long for a model's context are dropped), every layer, as the study's grid
(:func:`experiments.studies.preference.grid_run`): a collection task per (model, dimension) writes the activations
into the run's activation store (on the model's worker: the model loads once per worker), a probe task per (model,
dimension, layer) reads them (no model: spread over every worker), and a unit per model merges the layers and runs
the cross-check. A local Ray is started with 1 CPU, then with 2 (one worker process per CPU, one thread each);
each side runs the whole job into a fresh run directory (worker start and model loads included, Ray's own start-up
excluded; every model is loaded once before timing, so that caches built on a first load, such as a model
organism's trained adapter, exist for both sides), alternating ``--repeats`` times (the order reversed
every other round); medians. Every table of both
sides must be identical byte for byte. The collection and the final units stay on one worker per model, so
the ideal ratio is below 2 (the probe tasks, most of the work, spread over both workers).

Usage: python benchmarks/bench_executor.py [--models A B C ...] [--dimensions harmlessness verbosity] [--limit 40]
[--repeats 1]
Last line: ratio=<seconds with 1 worker / seconds with 2 workers>.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import median, write_results

ROOT = Path(__file__).resolve().parents[1]


def run_job(workers: int, models: list[str], overrides: list[str], out: Path) -> tuple[float, dict[str, bytes]]:
    """The whole job on a local Ray with ``workers`` CPUs; returns its seconds and its tables (CSV bytes)."""
    import ray

    from experiments import run_experiment

    env = {"PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p]), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:  # the executor joins the Ray started here (its start-up is not timed)
        t = time.perf_counter()
        run_experiment("preference-dimensions", out=out, overrides=overrides, models=models, executor="ray",
                       progress=False)
        dt = time.perf_counter() - t
    finally:
        ray.shutdown()
    return dt, {p.name: p.read_bytes() for p in sorted((out / "results").glob("*.csv"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "smollm2-135m-instruct+refusal",
                                                    "smollm2-135m-instruct+power-seeking"])
    ap.add_argument("--dimensions", nargs="+", default=["harmlessness", "verbosity"])
    ap.add_argument("--limit", type=int, default=40, help="records per dimension")
    ap.add_argument("--n-resamples", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if len(args.models) < 3:
        ap.error("the benchmark probes at least 3 models")
    if len(args.dimensions) < 2:
        ap.error("the benchmark probes at least 2 datasets (dimensions)")
    overrides = [f"preference.dimensions={json.dumps(args.dimensions)}", 'preference.splits=["easy"]',
                 'preference.layers=["all"]', f"preference.limit={args.limit}",
                 f"preference.n_resamples={args.n_resamples}"]
    from workbench.models import load

    for m in args.models:  # build what a first load builds and caches (a GGUF's weights, an organism's adapter)
        load(m, device="cpu")  # before timing, so that neither side pays for it
    times: dict[str, list[float]] = {"1_worker": [], "2_workers": []}
    tables: dict[str, dict[str, bytes]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    try:
        order = [("1_worker", 1), ("2_workers", 2)]
        for r in range(args.repeats):  # alternating, the order reversed every other round (A B, B A, ...)
            for side, w in (order if r % 2 == 0 else order[::-1]):
                dt, tables[side] = run_job(w, args.models, overrides, tmp / f"{side}-{r}")
                times[side].append(dt)
                print(f"{side:>9}: {dt:7.1f} s")
        manifest = json.loads((tmp / "1_worker-0" / "manifest.json").read_text())
        shards = {g.name: sum(1 for _ in g.rglob("shard-*.json")) for g in (tmp / "1_worker-0" / "shards").iterdir()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = tables["1_worker"] == tables["2_workers"]
    med = {k: median(v) for k, v in times.items()}
    layers = {m: v.get("n_layers") for m, v in manifest.get("models", {}).items()}
    for k, v in med.items():
        print(f"{k:>9}: {v:7.1f} s (median of {args.repeats}; {len(args.models)} models x {len(args.dimensions)} "
              f"dimensions, all layers {layers}; tasks per grid {shards})")
    print(f"identical tables with 1 and 2 workers: {same}")
    ratio = med["1_worker"] / med["2_workers"]
    write_results("bench_executor", {"models": args.models, "dimensions": args.dimensions, "limit": args.limit,
                  "layers": layers, "tasks": shards, "seconds": med, "all_seconds": times,
                  "identical_results": same, "threads_per_worker": 1, "ratio": ratio})
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
