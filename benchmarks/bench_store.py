"""Activation collection vs plain batched HF forward passes, and memory vs number of prompts.

Side by side in one run, on the default model (SmolLM2-135M-Instruct, CPU, fp32 weights):

- ours: ``collect_activations`` of ``resid_post`` at all 30 layers, every real token, stored as
  float16 safetensors shards on disk (TransformerLens backend, length-bucketed batches);
- peer: plain ``hf_model(input_ids, attention_mask, position_ids)`` over the same batches
  (an independently loaded HF model, eager attention), logits included as a plain forward has;
- stricter peer (printed, not the ratio): HF with ``output_hidden_states=True`` and
  ``logits_to_keep=1``, the cheapest HF route to every layer's residual stream.

Then peak RSS of a child process that collects for 250 and for 1,000 prompts: the store streams,
so peak memory should not grow with the number of prompts.

Usage: python benchmarks/bench_store.py [--n 1000] [--repeats 1]
Last line: ratio=<our tokens/s / plain HF tokens/s>.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_prompts(tokenizer, n: int, seed: int = 0, lo: int = 8, hi: int = 160) -> list[str]:
    """``n`` prompts of mixed length (uniform lo..hi words) from a fixed word list, seeded."""
    import random

    words = ("the model reads a prompt and writes an answer about science history music cooking travel "
             "law sport code data language mind city river mountain ocean energy time money health").split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(lo, hi))).capitalize() + "." for _ in range(n)]


def child(n: int, out: str) -> None:
    import torch

    torch.set_num_threads(2)
    from workbench.models import load
    from workbench.store import collect_activations

    m = load("smollm2-135m-instruct", backend="tl")
    prompts = make_prompts(m.tokenizer, n)
    collect_activations(m, prompts, [f"resid_post.{L}" for L in range(m.n_layers)], out, positions="all",
                        dtype="float16", batch_size=32, max_tokens_per_batch=2048, resume=False, progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "peak_rss_mb": peak_kb / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--child", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.out)
        return
    import torch

    torch.set_num_threads(2)
    from transformers import AutoModelForCausalLM

    from workbench.models import load
    from workbench.store import collect_activations, length_buckets

    m = load("smollm2-135m-instruct", backend="tl")
    hf = AutoModelForCausalLM.from_pretrained(m.source, attn_implementation="eager", dtype=torch.float32).eval()
    prompts = make_prompts(m.tokenizer, args.n)
    lengths = [len(m.tokenizer(p)["input_ids"]) for p in prompts]
    batches = length_buckets(lengths, batch_size=32, max_tokens=2048)
    n_tokens = sum(lengths)
    print(f"{args.n} prompts, {n_tokens} tokens (lengths {min(lengths)}..{max(lengths)}), {len(batches)} batches")
    sites = [f"resid_post.{L}" for L in range(m.n_layers)]
    toks = [m.tokenize([prompts[i] for i in b]) for b in batches]

    def hf_plain():
        with torch.inference_mode():
            for t in toks:
                hf(t.input_ids, attention_mask=t.attention_mask, position_ids=t.position_ids)

    def hf_hidden():
        with torch.inference_mode():
            for t in toks:
                out = hf(t.input_ids, attention_mask=t.attention_mask, position_ids=t.position_ids,
                         output_hidden_states=True, logits_to_keep=1)
                [h[t.attention_mask.bool()].half() for h in out.hidden_states[1:]]

    with tempfile.TemporaryDirectory() as d:
        def ours():
            collect_activations(m, prompts, sites, Path(d) / "store", positions="all", dtype="float16",
                                batch_size=32, max_tokens_per_batch=2048, resume=False, progress=False)
        times = {}
        for name, fn in [("hf_plain", hf_plain), ("ours", ours), ("hf_hidden", hf_hidden)]:
            t0 = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - t0
            print(f"{name:>10}: {times[name]:7.1f} s  {n_tokens / times[name]:8.0f} tokens/s")
        size = sum(p.stat().st_size for p in (Path(d) / "store" / "shards").glob("*.safetensors"))
        print(f"store size: {size / 2**20:.0f} MiB (float16, {len(sites)} sites, every real token)")

    peaks = {}
    for n in (250, 1000):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, __file__, "--child", str(n), "--out", str(Path(d) / "s")],
                               capture_output=True, text=True, check=True)
            peaks[n] = json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]
        print(f"peak RSS collecting {n:>4} prompts: {peaks[n]:.0f} MiB")
    growth = peaks[1000] / peaks[250] - 1
    print(f"peak RSS growth 250 -> 1000 prompts: {growth:+.1%} (target: within 10%)")
    print(f"ours / hf_hidden (stricter peer): {times['hf_hidden'] / times['ours']:.2f}x")
    print(f"ratio={times['hf_plain'] / times['ours']:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
