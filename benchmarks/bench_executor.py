"""The Ray executor on a probe batch job: 1 vs 2 workers (one thread each), the same tasks.

The job: a logistic probe at every layer (:func:`experiments.tasks.probe_sweep_task`) of each model on two
labelled sets (the project's test-vs-deploy framing set and HH-RLHF harmless pairs; prompts too long for a
model's context are dropped), one task per (model, dataset), run through
:class:`experiments.executors.RayExecutor` with the tasks of a model on one model worker (``key=model_key``:
the model loads once per worker). A local Ray is started with 1 CPU, then with 2 (one worker process per CPU,
``threads=1`` per task); each side runs the whole job (worker start and model loads included, Ray's own
start-up excluded; every model is loaded once before timing, so that caches built on a first load, such as a
model organism's trained adapter, exist for both sides), alternating ``--repeats`` times; medians. The results of both sides must be identical.
Ideal ratio: min(2, number of models / ceil(number of models / 2)) (a model's tasks stay on one worker).

Usage: python benchmarks/bench_executor.py [--models A B C ...] [--n-framing 4] [--n-pairs 16] [--repeats 1]
Last line: ratio=<seconds with 1 worker / seconds with 2 workers>.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import median, write_results


def run_job(workers: int, tasks: list[dict]) -> tuple[float, dict]:
    from experiments.executors import RayExecutor
    from experiments.tasks import model_key, probe_sweep_task

    ex = RayExecutor(None, num_cpus=workers)
    try:
        t = time.perf_counter()
        out = dict(ex.map(probe_sweep_task, tasks, key=model_key))
        return time.perf_counter() - t, out
    finally:
        ex.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "smollm2-135m-instruct+refusal",
                                                    "smollm2-135m-instruct+power-seeking"])
    ap.add_argument("--n-framing", type=int, default=4, help="topics of the framing set")
    ap.add_argument("--n-pairs", type=int, default=16, help="HH-RLHF harmless pairs")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if len(args.models) < 3:
        ap.error("the benchmark probes at least 3 models")
    tasks = [{"model": m, "backend": "tl", "device": "cpu", "dtype": "float32", "dataset": d,
              "n": args.n_framing if d == "framing" else args.n_pairs, "seed": 0, "threads": 1}
             for m in args.models for d in ("framing", "harmlessness")]
    from workbench.models import load

    for m in args.models:  # build what a first load builds and caches (a GGUF's weights, an organism's adapter)
        load(m, device="cpu")  # before timing, so that neither side pays for it
    times: dict[str, list[float]] = {"1_worker": [], "2_workers": []}
    results = {}
    for _ in range(args.repeats):
        for side, w in (("1_worker", 1), ("2_workers", 2)):
            dt, out = run_job(w, tasks)
            times[side].append(dt)
            results[side] = out
            print(f"{side:>9}: {dt:7.1f} s")
    same = json.dumps(results["1_worker"], sort_keys=True) == json.dumps(results["2_workers"], sort_keys=True)
    med = {k: median(v) for k, v in times.items()}
    layers = {m: len(next(r for r in results["1_worker"].values() if r["model"] == m)["layers"]) for m in args.models}
    examples = {f"{r['model']}/{r['dataset']}": r["n_examples"] for r in results["1_worker"].values()}
    for k, v in med.items():
        print(f"{k:>9}: {v:7.1f} s (median of {args.repeats}; {len(tasks)} tasks: {len(args.models)} models x 2 "
              f"datasets, all layers {layers})")
    print(f"identical results with 1 and 2 workers: {same}")
    ratio = med["1_worker"] / med["2_workers"]
    write_results("bench_executor", {"models": args.models, "layers": layers, "examples": examples,
                  "tasks": len(tasks), "seconds": med, "all_seconds": times, "identical_results": same,
                  "threads_per_worker": 1, "ratio": ratio})
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
