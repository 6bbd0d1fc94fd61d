"""Forward throughput: our HookedModel against plain transformers, both with SDPA, same model and batch.

Ours: ``HookedModel.forward`` on the nnsight backend (SDPA chosen automatically: nothing reads attention
weights), logits at every position, no hooks. Peer: an independently loaded ``AutoModelForCausalLM`` with
``attn_implementation="sdpa"``, the same padded batch, ``attention_mask`` and ``position_ids``. The two alternate,
``--repeats`` times after a warm-up; medians. Target: ratio >= 0.95 (the wrapper costs at most 5%).

Usage: python benchmarks/bench_forward.py [--model smollm2-135m-instruct | llama3-8b-random] [--device cuda]
       [--dtype bfloat16] [--batch 8] [--seq 128] [--repeats 5]
Last line: ratio=<our tokens/s / transformers' tokens/s>.
"""

from __future__ import annotations

import argparse

from _common import alternate, load_subject, median, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    ours = load_subject(args.model, backend="nnsight", device=args.device, dtype=args.dtype)
    assert ours.attn_implementation == "sdpa", ours.attn_implementation
    if args.model == "llama3-8b-random":  # the same weights, a plain transformers model around them
        peer = ours.hf_model
    else:
        from transformers import AutoModelForCausalLM

        peer = AutoModelForCausalLM.from_pretrained(ours.source, attn_implementation="sdpa",
                                                    dtype=getattr(torch, args.dtype)).to(args.device).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, min(ours.facts.d_vocab, 20000), (args.batch, args.seq), generator=g).to(ours.device)
    toks = ours.tokenize(ids)
    n_tokens = args.batch * args.seq

    def run_ours():
        ours.forward(toks)

    def run_peer():
        with torch.inference_mode():
            peer(toks.input_ids, attention_mask=toks.attention_mask, position_ids=toks.position_ids)
    run_ours(), run_peer()  # warm-up
    with torch.inference_mode():
        ref = peer(toks.input_ids, attention_mask=toks.attention_mask, position_ids=toks.position_ids).logits
    diff = float((ours.forward(toks) - ref).abs().max())
    times = alternate({"ours": run_ours, "transformers_sdpa": run_peer}, args.repeats, args.device)
    tps = {k: n_tokens / median(v) for k, v in times.items()}
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    for k, v in tps.items():
        print(f"{k:>18}: {v:9.0f} tokens/s (median of {args.repeats}; {args.batch} x {args.seq} tokens)")
    print(f"max |logit difference|: {diff:.2e}" + (f"; peak GPU memory {peak:.1f} GiB" if peak else ""))
    ratio = tps["ours"] / tps["transformers_sdpa"]
    write_results("bench_forward", {"model": args.model, "device": args.device, "dtype": args.dtype,
                                    "batch": args.batch, "seq": args.seq, "tokens_per_s": tps,
                                    "max_logit_diff": diff, "peak_gpu_gib": peak, "ratio": ratio})
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
