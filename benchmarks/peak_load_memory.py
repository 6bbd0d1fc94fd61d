"""Peak memory of a load in bf16 against float32: one copy of the weights, in the requested precision.

A random Llama-family model (~0.25 B parameters) is saved as float32 and as bf16 safetensors; each is loaded by
``workbench.load`` in its own precision in a fresh child process (the backend's wrapper and the self-check, which
touches every weight, included), and the child's peak resident memory is compared with a child that imports
everything and stops short of the load. Target: the bf16 load's extra peak is about half the float32 load's.
Also printed, not the ratio: a float32 checkpoint loaded as bf16, where transformers holds the float32 pages
while it converts (a transient of the conversion, not a second copy kept).

Usage: python benchmarks/peak_load_memory.py [--backend tl|nnsight]
Last line: ratio=<bf16 extra peak / float32 extra peak>.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import write_results


def child(model_dir: str, dtype: str, backend: str) -> None:
    import torch

    from workbench.models import load

    torch.set_num_threads(1)
    if dtype != "none":
        m = load(model_dir, backend=backend, dtype=dtype, device="cpu")
        assert m.dtype == getattr(torch, dtype)
    # VmHWM: this process's own high-water mark (ru_maxrss can carry the forking parent's across exec)
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"peak_mb": hwm / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="nnsight")
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from workbench.models.tiny import build_tiny_tokenizer

    with tempfile.TemporaryDirectory() as d:
        cfg = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=16,
                          num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=512,
                          bos_token_id=256, eos_token_id=256, pad_token_id=259, tie_word_embeddings=False)
        torch.manual_seed(0)
        m = LlamaForCausalLM(cfg)
        n_params = sum(p.numel() for p in m.parameters())
        dirs = {"float32": Path(d) / "f32", "bfloat16": Path(d) / "bf16"}
        m.save_pretrained(dirs["float32"])
        m.to(torch.bfloat16).save_pretrained(dirs["bfloat16"])
        del m
        for x in dirs.values():
            build_tiny_tokenizer(x)
        peaks = {}
        for name, model_dir, dtype in (("imports only", dirs["float32"], "none"),
                                       ("float32", dirs["float32"], "float32"),
                                       ("bfloat16", dirs["bfloat16"], "bfloat16"),
                                       ("float32 ckpt as bf16", dirs["float32"], "bfloat16")):
            r = subprocess.run([sys.executable, __file__, "--child", str(model_dir), dtype, args.backend],
                               capture_output=True, text=True, check=True)
            peaks[name] = json.loads(r.stdout.strip().splitlines()[-1])["peak_mb"]
            print(f"peak RSS, {name:>20}: {peaks[name]:8.0f} MiB")
    extra = {k: peaks[k] - peaks["imports only"] for k in ("float32", "bfloat16", "float32 ckpt as bf16")}
    print(f"{n_params / 1e6:.0f} M parameters: {n_params * 4 / 2**20:.0f} MiB in float32, {n_params * 2 / 2**20:.0f} MiB "
          f"in bf16; extra peak: float32 {extra['float32']:.0f} MiB, bf16 {extra['bfloat16']:.0f} MiB, a float32 "
          f"checkpoint converted to bf16 {extra['float32 ckpt as bf16']:.0f} MiB")
    ratio = extra["bfloat16"] / extra["float32"]
    write_results("peak_load_memory", {"backend": args.backend, "n_params": n_params, "peak_rss_mb": peaks,
                                       "extra_peak_mb": extra, "ratio": ratio})
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
