"""Benchmark: a resid_pre activation-patching sweep (all layers x all positions) on SmolLM2-135M, CPU.

Ours (:func:`circuits.patching_sweep`, batched partial forwards from the patched layer, prefix KV reuse,
logits only at the read position) against TransformerLens's per-cell loop
(``transformer_lens.patching.get_act_patch_resid_pre``) on the TL bridge of the *same* HookedModel,
same tokens, same metric, side by side in one run. Prints the agreement and, as the last line,
``ratio=<TL seconds / our seconds>`` (> 1 means ours is faster).

    python benchmarks/bench_patching.py [--repeats 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    import transformer_lens.patching as tlp

    from circuits import LogitDiff, patching_sweep, single_token_ids
    from circuits.corruption import check_pair
    from workbench.models import load

    model = load("smollm2-135m-instruct", backend="tl")
    clean = "When Mary and John went to the store after a long day at work, John gave a drink to"
    corrupt = "When Mary and John went to the store after a long day at work, Mary gave a drink to"
    ct, xt = check_pair(model, clean, corrupt)
    metric = LogitDiff(single_token_ids(model, " Mary"), single_token_ids(model, " John"))
    T = ct.shape[1]
    print(f"model {model.name}, {model.n_layers} layers, prompt {T} tokens: {model.n_layers * T} cells")

    def tl_metric(logits):
        return metric(logits[:, -1], torch.arange(logits.shape[0])).mean()

    bridge = model.bridge
    # warm-up both paths once (allocator, lazy imports)
    bridge(xt.input_ids)
    patching_sweep(model, ct, xt, "resid_pre", metric=metric, layers=[model.n_layers - 1])
    ours_t, tl_t = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        ours = patching_sweep(model, ct, xt, "resid_pre", metric=metric)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.inference_mode():
            _, clean_cache = bridge.run_with_cache(ct.input_ids)
            ref = tlp.get_act_patch_resid_pre(bridge, xt.input_ids, clean_cache, tl_metric)
        tl_t.append(time.perf_counter() - t0)
    err = float((ours.mean - ref).abs().max())
    o, t = min(ours_t), min(tl_t)
    print(f"ours: {o:.2f} s   transformer_lens per-cell loop: {t:.2f} s   max |ours - TL| = {err:.2e}")
    print(f"clean logit diff {float(ours.clean_value.mean()):.3f}, corrupt {float(ours.corrupt_value.mean()):.3f}")
    if err > 1e-4:
        print(f"WARNING: disagreement {err:.2e} exceeds 1e-4")
    print(f"ratio={t / o:.2f}")


if __name__ == "__main__":
    main()
