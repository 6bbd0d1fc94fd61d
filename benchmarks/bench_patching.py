"""Benchmark: a resid_pre activation-patching sweep (all layers x all positions) on SmolLM2-135M, CPU.

Ours (:func:`circuits.patching_sweep`: batched partial forwards that start at the patched layer, reuse the
corrupt run's keys/values for earlier positions and unembed only the read position) against
TransformerLens's per-cell loop (``transformer_lens.patching.get_act_patch_resid_pre``) on the TL bridge
of the *same* HookedModel, same tokens, same metric, in one run.

The machine may be shared, so the two are interleaved: our full sweep is timed before, between and after
blocks of TransformerLens cells, and the ratio is (total TL time) / (mean of our sweep times). Every cell
of the TL loop is run (``--tl-every k`` times only every k-th cell and scales the time by k: each TL cell
is one full forward of the same input, so its cost does not depend on the cell). Also prints the maximum
disagreement over the cells TL computed. Last line: ``ratio=<TL / ours>`` (> 1: ours faster).
``--device cuda`` runs both on the GPU: on an H100 (2026-11-22) ours 1.02 s vs TL's loop 37.7 s for 600
cells, ``ratio=36.83``, max disagreement 1.7e-5.

    python benchmarks/bench_patching.py [--threads 2] [--blocks 6] [--tl-every 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=6, help="TL cells are timed in this many blocks between our runs")
    ap.add_argument("--tl-every", type=int, default=1, help="time every k-th TL cell only (scaled by k)")
    ap.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA if available)")
    a = ap.parse_args()
    import pandas as pd
    import torch

    torch.set_num_threads(a.threads)
    import transformer_lens.patching as tlp

    from circuits import LogitDiff, patching_sweep, single_token_ids
    from circuits.corruption import check_pair
    from workbench.models import load

    model = load("smollm2-135m-instruct", backend="tl", device=a.device)

    def sync():
        if model.device.type == "cuda":  # timings include the queued GPU work
            torch.cuda.synchronize(model.device)
    clean = "When Mary and John went to the store after a long day at work, John gave a drink to"
    corrupt = "When Mary and John went to the store after a long day at work, Mary gave a drink to"
    ct, xt = check_pair(model, clean, corrupt)
    metric = LogitDiff(single_token_ids(model, " Mary"), single_token_ids(model, " John"))
    N, T = model.n_layers, ct.shape[1]
    print(f"model {model.name}, {N} layers, prompt {T} tokens: {N * T} cells, threads={a.threads}, "
          f"device {model.device}")

    def tl_metric(logits):
        return metric(logits[:, -1], torch.arange(logits.shape[0])).mean()

    bridge = model.bridge
    cells = [(L, p) for L in range(N) for p in range(T)]
    timed = cells[::a.tl_every]
    blocks = [timed[i::a.blocks] for i in range(a.blocks)]
    with torch.inference_mode():
        bridge(xt.input_ids)  # warm-up
    patching_sweep(model, ct, xt, "resid_pre", metric=metric, layers=[N - 1])

    def ours_once():
        sync()
        t0 = time.perf_counter()
        r = patching_sweep(model, ct, xt, "resid_pre", metric=metric)
        sync()
        return time.perf_counter() - t0, r

    ours_t, tl_t, ref_vals = [], 0.0, {}
    t, ours = ours_once()
    ours_t.append(t)
    for block in blocks:
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            _, clean_cache = bridge.run_with_cache(ct.input_ids)
            df = pd.DataFrame(block, columns=["layer", "pos"])
            vals = tlp.generic_activation_patch(bridge, xt.input_ids, clean_cache, tl_metric,
                                                tlp.layer_pos_patch_setter, "resid_pre", index_df=df)
        sync()
        tl_t += time.perf_counter() - t0
        ref_vals.update({c: float(v) for c, v in zip(block, vals)})
        t, _ = ours_once()
        ours_t.append(t)
    tl_total = tl_t * a.tl_every
    err = max(abs(float(ours.mean[L, p]) - v) for (L, p), v in ref_vals.items())
    mean_ours = sum(ours_t) / len(ours_t)
    print(f"ours: mean {mean_ours:.2f} s over {len(ours_t)} interleaved runs (min {min(ours_t):.2f}, max {max(ours_t):.2f})")
    print(f"transformer_lens per-cell loop: {tl_total:.2f} s for {len(cells)} cells"
          + (f" (timed {len(timed)} cells, x{a.tl_every})" if a.tl_every > 1 else ""))
    print(f"max |ours - TL| over {len(ref_vals)} cells = {err:.2e}; clean logit diff "
          f"{float(ours.clean_value.mean()):.3f}, corrupt {float(ours.corrupt_value.mean()):.3f}")
    if err > 1e-4:
        print(f"WARNING: disagreement {err:.2e} exceeds 1e-4")
    print(f"ratio={tl_total / mean_ours:.2f}")


if __name__ == "__main__":
    main()
