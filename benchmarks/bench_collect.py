"""Activation collection: every layer's residual stream, ours against transformers' cheapest route.

Ours: ``HookedModel.run_with_cache(tokens, resid_post at every layer, logits=None)`` (the residual-collection
path: the decoder layers run directly, no tracing, no unembedding), on the given backend. Peer (the stricter
one): transformers with the same attention kernel, ``output_hidden_states=True`` and ``logits_to_keep=1``. Same
length-bucketed batches of mixed-length prompts; the two alternate ``--repeats`` times (order reversed every other round) after a warm-up; medians.
Target: ratio >= 1.0.

Usage: python benchmarks/bench_collect.py [--model ...] [--backend nnsight|tl] [--device cuda] [--dtype bfloat16]
       [--n 64] [--repeats 3]
Last line: ratio=<our tokens/s / transformers' tokens/s>.
"""

from __future__ import annotations

import argparse

from _common import alternate, load_subject, make_prompts, median, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--backend", default="nnsight")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from workbench.store import length_buckets

    torch.set_num_threads(args.threads)
    ours = load_subject(args.model, backend=args.backend, device=args.device, dtype=args.dtype)
    attn = ours.attn_implementation if ours.attn_implementation != "transformer_lens" else "eager"
    if args.model == "llama3-8b-random":
        peer = ours.hf_model
    else:
        from transformers import AutoModelForCausalLM

        peer = AutoModelForCausalLM.from_pretrained(ours.source, attn_implementation=attn,
                                                    dtype=getattr(torch, args.dtype)).to(args.device).eval()
    prompts = make_prompts(args.n)
    lengths = [len(ours.tokenize(p).real_tokens(0)) for p in prompts]
    batches = [ours.tokenize([prompts[i] for i in b]) for b in length_buckets(lengths, batch_size=16, max_tokens=2048)]
    n_tokens = sum(lengths)
    sites = [f"resid_post.{L}" for L in range(ours.n_layers)]

    def run_ours():
        for t in batches:
            ours.run_with_cache(t, sites, logits=None)

    def run_peer():
        with torch.inference_mode():
            for t in batches:
                peer(t.input_ids, attention_mask=t.attention_mask, position_ids=t.position_ids,
                     output_hidden_states=True, logits_to_keep=1)
    run_ours(), run_peer()
    with torch.inference_mode():
        t = batches[0]
        hs = peer(t.input_ids, attention_mask=t.attention_mask, position_ids=t.position_ids,
                  output_hidden_states=True, logits_to_keep=1).hidden_states
    _, c = ours.run_with_cache(t, sites, logits=None)
    real = t.attention_mask.bool()
    diff = max(float((c[s] - hs[L + 1])[real].abs().max()) for L, s in enumerate(sites[:-1]))  # last: HF normalises
    times = alternate({"ours": run_ours, "transformers_hidden_states": run_peer}, args.repeats, args.device)
    tps = {k: n_tokens / median(v) for k, v in times.items()}
    for k, v in tps.items():
        print(f"{k:>27}: {v:9.0f} tokens/s (median of {args.repeats}; {args.n} prompts, {n_tokens} tokens, "
              f"{len(batches)} batches)")
    print(f"backend {args.backend}, attention {ours.attn_implementation}; max |activation difference|: {diff:.2e}")
    ratio = tps["ours"] / tps["transformers_hidden_states"]
    write_results(f"bench_collect_{args.backend}", {"model": args.model, "backend": args.backend,
                  "device": args.device, "dtype": args.dtype, "n_prompts": args.n, "n_tokens": n_tokens,
                  "tokens_per_s": tps, "max_activation_diff": diff, "ratio": ratio})
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
