"""Shared pieces of the benchmarks: the model under test, prompts, timing, and the results file.

Every benchmark prints its numbers, writes them to ``benchmarks/results/<name>.json`` (the latest run: the
numbers a README or note cites come from there, not from docstrings) and prints ``ratio=`` last.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RESULTS = Path(__file__).resolve().parent / "results"


def make_prompts(n: int, seed: int = 0, lo: int = 8, hi: int = 160) -> list[str]:
    """``n`` prompts of mixed length (uniform lo..hi words) from a fixed word list, seeded."""
    import random

    words = ("the model reads a prompt and writes an answer about science history music cooking travel "
             "law sport code data language mind city river mountain ocean energy time money health").split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(lo, hi))).capitalize() + "." for _ in range(n)]


def load_subject(spec: str, *, backend: str, device: str, dtype: str, attn: str = "auto") -> Any:
    """The model a benchmark measures: a registered name / path, or ``llama3-8b-random`` (Llama-3-8B's config with
    random weights, built on the device: nothing to download)."""
    import torch

    from workbench.models import load

    if spec != "llama3-8b-random":
        return load(spec, backend=backend, device=device, dtype=dtype, attn_implementation=attn)
    from transformers import AutoModelForCausalLM, LlamaConfig

    from workbench.models.tiny import build_tiny_tokenizer

    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=256, eos_token_id=256, pad_token_id=259)
    dt = getattr(torch, dtype)
    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(cfg, dtype=dt, attn_implementation="eager")
    tok_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "workbench-bench-tok"
    tok = build_tiny_tokenizer(tok_dir)
    return load(hf.eval(), tokenizer=tok, backend=backend, device=device, name=spec, attn_implementation=attn)


def sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, device: Any) -> dict[str, list[float]]:
    """Run each function ``repeats`` times, alternating between them, the order reversed every other round
    (A B, B A, ...: drift and whatever the previous function left behind, warm caches or a hot CPU, hit both sides
    alike); seconds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    items = list(fns.items())
    for r in range(repeats):
        for name, fn in (items if r % 2 == 0 else items[::-1]):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return times


def write_results(name: str, numbers: dict) -> Path:
    """Write ``numbers`` (with the machine and versions) to ``benchmarks/results/<name>.json``."""
    from importlib.metadata import PackageNotFoundError, version

    vers = {}
    for pkg in ("torch", "transformers", "transformer-lens", "nnsight"):
        try:
            vers[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    rec = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
           "cpus": os.cpu_count(), "argv": sys.argv[1:], "versions": vers, **numbers}
    out.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)
