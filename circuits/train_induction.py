"""Train the shipped 2-layer attention-only induction model (seeded, CPU, about 10-25 minutes on 2 cores).

Usage::

    python -m circuits.train_induction --out circuits/assets/induction-2l   # the shipped model (defaults)
    python -m circuits.train_induction --out /tmp/x --steps 50              # a quick smoke run

The model
---------
A GPT-2 configuration (a family both backends and TransformerLens support) with 2 layers, 4 heads of
width 16 (d_model 64), learned positions (256, initialised with sinusoids, trained), tied embeddings, and the
byte-level tokenizer of :mod:`workbench.models.tiny` (256 byte tokens + 4 specials, vocabulary 260).

"Attention-only" is realised exactly: every MLP has width ``n_inner = 4`` and all its weights and biases
(``mlp.c_fc``, ``mlp.c_proj``) are zero and frozen (``requires_grad=False``), so ``mlp_out == 0`` at every
layer and position for any input (checked at the end of training and in the tests, on both backends). The
blocks still apply ``ln_2`` before the null MLP, which is harmless: its output is multiplied by zero.

The data
--------
Each sequence is ``[BOS] + 63`` tokens drawn uniformly from the 256 byte tokens, in which one segment (length
8..30) is copied to a second, later place: immediately after the first copy in half the rows, after a random
gap in the others, always at a random offset, so the second copy can only be predicted by looking back at
what followed the same token earlier (no positional shortcut). Random tokens are unpredictable (ln 256 =
5.545 nats); repeated ones become predictable through a previous-token head in layer 0 and an induction head
in layer 1 (Olsson et al. 2022, "In-context Learning and Induction Heads").

Status (read before using): no model is shipped yet
----------------------------------------------------
Within the CPU budget of the session that wrote this script, no recipe produced the canonical circuit:

- from scratch (GPT-2, learned or sinusoid-initialised positions, T = 128 or 64, lr 1e-3..1e-2, 3000-6000
  steps) the loss stayed on the induction plateau (repeated-half loss 4.9-5.5 nats);
- a rotary (Llama) variant learned the task (repeated-half loss 0.94 nats at T = 101) with a diffuse,
  non-canonical solution (no head above 0.1 previous-token or induction attention), useless as ground truth;
- the supervised warm starts below (stage 1: layer-0 head 0 trained to attend to the previous token and to
  write its identity, reaching 0.9997 attention; stage 1b: layer-1 head 0's Q/K trained to attend to the
  induction target) did not help: stage 1b stayed at uniform attention (0.027) and next-token training then
  overwrote the planted previous-token head.

The options are kept (``--warm-start-steps``, ``--induction-warm-start-steps``) for the next attempt; the
obvious next steps are a longer run on a GPU, or an explicit hand construction with the ground truth written
into the weights. :func:`identify_heads` reads the heads of any trained model with plain Hugging Face code and
records them in ``training.json``, which the tests read as ground truth.

Reproducibility
---------------
Everything is drawn from ``torch.Generator`` objects seeded from ``--seed``; training runs on the CPU with
``torch.use_deterministic_algorithms(True)`` and ``--threads`` (default 1) intra-op threads. With the same
torch build and thread count the weights reproduce bit for bit (tests/circuits/test_train_induction.py,
slow); across builds or thread counts, floating-point reduction order differs, so compare the evaluation
numbers and the ground-truth heads in ``training.json`` rather than the bits.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

__all__ = ["INDUCTION_CONFIG", "build_model", "make_batch", "train", "main"]

VOCAB_DATA = 256  # byte tokens the data is drawn from
SEQ_LEN = 64
BOS = 256
POS_INIT_SCALE = 0.03
INDUCTION_CONFIG = dict(n_layer=2, n_head=4, n_embd=64, n_inner=4, n_positions=256)


def build_model(seed: int, arch: str = "gpt2"):
    """The untrained model with zeroed, frozen MLPs (see the module docstring)."""
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=260, bos_token_id=BOS, eos_token_id=BOS, pad_token_id=259,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.02,
            tie_word_embeddings=True, n_layer=2, n_head=4, n_embd=64, n_inner=4, n_positions=256,
        )
        cls = GPT2LMHeadModel
    elif arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=260, bos_token_id=BOS, eos_token_id=BOS, pad_token_id=259, hidden_size=64,
            intermediate_size=4, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            max_position_embeddings=256, initializer_range=0.02, tie_word_embeddings=True, rms_norm_eps=1e-5,
        )
        cls = LlamaForCausalLM
    else:
        raise ValueError(f"arch must be 'llama' or 'gpt2', got {arch!r}")
    config.attention_only = True  # informational: recorded in config.json
    config._attn_implementation = "eager"  # attention probabilities are returned (warm start, head identification)
    torch.manual_seed(seed)
    model = cls(config)
    layers = model.transformer.h if arch == "gpt2" else model.model.layers
    if arch == "gpt2":  # sinusoidal initialisation of the (still learned) positions: relative offsets are linear maps
        with torch.no_grad():
            n, d = model.transformer.wpe.weight.shape
            pos = torch.arange(n, dtype=torch.float32)[:, None]
            freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
            pe = torch.zeros(n, d)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
            model.transformer.wpe.weight.copy_(POS_INIT_SCALE * pe)
    with torch.no_grad():
        for block in layers:
            for p in block.mlp.parameters():
                p.zero_()
                p.requires_grad_(False)
    return model


def _mlp_out_weights(model) -> list[torch.Tensor]:
    layers = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    return [p for block in layers for p in block.mlp.parameters()]


def make_batch(gen: torch.Generator, batch: int, seq_len: int = SEQ_LEN) -> torch.Tensor:
    """``[batch, seq_len]`` token ids: BOS, random bytes, one segment repeated at a random offset.

    Half the rows repeat the segment immediately after a random-length random prefix (the dense signal of
    the repeated-random-tokens protocol), half repeat it after a random gap.
    """
    body = seq_len - 1
    x = torch.randint(0, VOCAB_DATA, (batch, body), generator=gen)
    for b in range(batch):
        L = int(torch.randint(8, body // 2, (1,), generator=gen))
        a = int(torch.randint(0, body - 2 * L + 1, (1,), generator=gen))
        if bool(torch.rand((), generator=gen) < 0.5):
            c = a + L
        else:
            c = int(torch.randint(a + L, body - L + 1, (1,), generator=gen))
        x[b, c:c + L] = x[b, a:a + L]
    return torch.cat([torch.full((batch, 1), BOS, dtype=torch.long), x], dim=1)


@torch.no_grad()
def evaluate(model, seed: int = 12345, n: int = 64, half: int = 50) -> dict:
    """Loss on the repeated half of ``[BOS] + s + s`` (``s``: ``half`` random bytes) and on the first half."""
    gen = torch.Generator().manual_seed(seed)
    s = torch.randint(0, VOCAB_DATA, (n, half), generator=gen)
    ids = torch.cat([torch.full((n, 1), BOS, dtype=torch.long), s, s], dim=1)
    logits = model(ids).logits
    lp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    # lp[:, t] is log p(token t+1); tokens 1..half are the first copy, half+1..2*half the second
    first = -lp[:, 1:half].mean()   # predicting first-copy tokens 2..half (unpredictable)
    second = -lp[:, half + 1:].mean()  # predicting second-copy tokens 2..half (predictable by induction)
    return {"loss_first_half": float(first), "loss_second_half": float(second), "ln_256": math.log(256)}


@torch.no_grad()
def identify_heads(model, seed: int = 4321, n: int = 32, half: int = 25) -> dict:
    """Which heads do what, read from the trained model with plain Hugging Face code (no circuits code).

    On ``[BOS] + s + s``: each head's mean attention to the previous position, and to the position after the
    previous occurrence of the current token (second copy only); the previous-token head is the layer-0 head
    with the most previous-position attention, the induction head the layer-1 head with the most induction
    attention. Each head's zero-ablation effect on the repeated-half loss is recorded too.
    """
    gen = torch.Generator().manual_seed(seed)
    s = torch.randint(0, VOCAB_DATA, (n, half), generator=gen)
    ids = torch.cat([torch.full((n, 1), BOS, dtype=torch.long), s, s], dim=1)
    T = ids.shape[1]
    att = model(ids, output_attentions=True).attentions  # per layer [n, H, T, T]
    prev = [a[:, :, torch.arange(1, T), torch.arange(0, T - 1)].mean((0, 2)) for a in att]
    q = torch.arange(half + 2, T)  # second-copy positions whose token has an earlier occurrence at q - half
    ind = [a[:, :, q, q - half + 1].mean((0, 2)) for a in att]
    layers = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    H = prev[0].shape[0]
    dh = model.config.hidden_size // H if hasattr(model.config, "hidden_size") else model.config.n_embd // H

    def loss_with(layer=None, head=None):
        handle = None
        if layer is not None:
            o = layers[layer].attn.c_proj if hasattr(layers[layer], "attn") else layers[layer].self_attn.o_proj

            def pre(mod, args):
                x = args[0].clone()
                x[..., head * dh:(head + 1) * dh] = 0
                return (x,)
            handle = o.register_forward_pre_hook(pre)
        try:
            lp = model(ids).logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        finally:
            if handle is not None:
                handle.remove()
        return float(-lp[:, half + 1:].mean())
    ablation = {f"{L}.{h}": round(loss_with(L, h), 4) for L in range(len(att)) for h in range(H)}
    return {
        "previous_token_head": [0, int(prev[0].argmax())],
        "induction_head": [1, int(ind[1].argmax())],
        "previous_token_attention": [[round(float(x), 4) for x in p] for p in prev],
        "induction_attention": [[round(float(x), 4) for x in i] for i in ind],
        "repeated_half_loss": round(loss_with(), 4),
        "repeated_half_loss_zero_ablating_head": ablation,
        "protocol": f"{n} sequences [BOS] + s + s, |s| = {half}, seed {seed}",
    }


def induction_targets(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each position, the position after the most recent earlier occurrence of its token (the induction
    target), and a mask of the positions that have one (``[B, T]`` each)."""
    B, T = ids.shape
    eq = (ids[:, :, None] == ids[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril(-1)
    j = torch.where(eq, torch.arange(T), torch.full((T,), -1)).max(-1).values  # last earlier occurrence or -1
    has = j >= 0
    return (j + 1).clamp(max=T - 1), has


def warm_start_previous_token_head(model, gen: torch.Generator, *, steps: int, batch: int, seq_len: int,
                                   lr: float, head: int = 0) -> list[dict]:
    """Stage 1: make layer 0's ``head`` a previous-token head, and nothing else.

    Two auxiliary losses, on layer 0 only: cross-entropy of the head's attention on the previous position, and
    cross-entropy of reading the *previous* token back from the attention layer's output with a separate linear
    probe (discarded afterwards), so the head writes the previous token's identity without writing it into the
    unembedding's directions. Trained: positions, token embeddings, layer 0's first norm, Q/K/V and output
    projections (and the probe). Layer 1, the unembedding path and the task (repeated segments) are not
    involved: the induction head must be learned in stage 2.
    """
    if not hasattr(model, "transformer"):
        raise ValueError("the warm start is implemented for the GPT-2 construction")
    tr, blk = model.transformer, model.transformer.h[0]
    probe = torch.nn.Linear(tr.wte.weight.shape[1], tr.wte.weight.shape[0])
    with torch.no_grad():  # seeded init from the run's generator
        probe.weight.normal_(0.0, 0.02, generator=gen)
        probe.bias.zero_()
    params = [tr.wpe.weight, tr.wte.weight, blk.ln_1.weight, blk.ln_1.bias, blk.attn.c_attn.weight,
              blk.attn.c_attn.bias, blk.attn.c_proj.weight, blk.attn.c_proj.bias] + list(probe.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    grab = {}
    handle = blk.attn.register_forward_hook(lambda m, a, out: grab.__setitem__("attn", out[0]))
    log = []
    try:
        for step in range(steps):
            ids = make_batch(gen, batch, seq_len)
            att = model(ids, output_attentions=True).attentions[0][:, head]  # [B, T, T]
            T = ids.shape[1]
            p = att[:, torch.arange(1, T), torch.arange(0, T - 1)]
            logits = probe(grab["attn"][:, 1:])
            copy = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, :-1].reshape(-1))
            loss = -(p.clamp_min(1e-9).log()).mean() + copy
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 50 == 0 or step == steps - 1:
                log.append({"stage": 1, "step": step, "prev_token_attention": round(float(p.detach().mean()), 4),
                            "copy_loss": round(float(copy.detach()), 4)})
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    return log


def warm_start_induction_head(model, gen: torch.Generator, *, steps: int, batch: int, seq_len: int, lr: float,
                              head: int = 0) -> list[dict]:
    """Stage 1b: train only layer 1's first norm and Q/K/V projection so that its ``head`` attends to the
    induction target (the position after the most recent earlier occurrence of the current token)."""
    blk = model.transformer.h[1]
    params = [blk.ln_1.weight, blk.ln_1.bias, blk.attn.c_attn.weight, blk.attn.c_attn.bias]
    opt = torch.optim.Adam(params, lr=lr)
    log = []
    for step in range(steps):
        ids = make_batch(gen, batch, seq_len)
        att = model(ids, output_attentions=True).attentions[1][:, head]
        tgt, has = induction_targets(ids)
        p = att.gather(-1, tgt[..., None])[..., 0][has]
        loss = -p.clamp_min(1e-9).log().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log.append({"stage": "1b", "step": step, "induction_attention": round(float(p.detach().mean()), 4)})
    model.zero_grad(set_to_none=True)
    return log


def train(out: str | Path, *, seed: int = 0, steps: int = 1500, batch: int = 64, lr: float = 2e-3,
          warmup: int = 100, threads: int = 1, arch: str = "gpt2", seq_len: int = SEQ_LEN,
          warm_start_steps: int = 400, induction_warm_start_steps: int = 600,
          induction_warm_start_lr: float = 1e-2, progress: bool = True) -> dict:
    """Train and save the model (HF layout + tokenizer + ``training.json``) to ``out``."""
    from workbench.models.tiny import build_tiny_tokenizer

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    model = build_model(seed, arch)
    model.train()
    gen = torch.Generator().manual_seed(seed + 1)
    log = []
    if warm_start_steps:
        log += warm_start_previous_token_head(model, gen, steps=warm_start_steps, batch=batch, seq_len=seq_len, lr=lr)
        if not progress:
            print(json.dumps(log[-1]), flush=True)
    if induction_warm_start_steps:
        log += warm_start_induction_head(model, gen, steps=induction_warm_start_steps, batch=batch, seq_len=seq_len,
                                         lr=induction_warm_start_lr)
        if not progress:
            print(json.dumps(log[-1]), flush=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    decay_from = int(0.6 * steps)  # linear warmup, constant, then cosine decay over the last 40%

    def lr_at(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        if s < decay_from:
            return 1.0
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - decay_from) / max(1, steps - decay_from)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0 = time.time()
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="train induction model", mininterval=5)
    for step in it:
        ids = make_batch(gen, batch, seq_len)
        loss = model(ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log.append({"step": step, "loss": round(float(loss.detach()), 5)})
            if not progress:
                print(json.dumps(log[-1]), flush=True)
    model.eval()
    for p in _mlp_out_weights(model):  # attention-only must still hold exactly
        assert float(p.abs().sum()) == 0.0
    metrics = evaluate(model, half=min(50, (seq_len - 1) // 2))
    truth = identify_heads(model, half=min(25, (seq_len - 1) // 2 - 1))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    build_tiny_tokenizer(out)
    info = {
        "script": "circuits/train_induction.py", "seed": seed, "steps": steps, "batch": batch, "lr": lr,
        "warmup": warmup, "threads": threads, "arch": arch, "seq_len": seq_len, "warm_start_steps": warm_start_steps,
        "induction_warm_start_steps": induction_warm_start_steps, "induction_warm_start_lr": induction_warm_start_lr, "torch": torch.__version__,
        "config": INDUCTION_CONFIG, "seconds": round(time.time() - t0, 1), "eval": metrics, "ground_truth": truth,
        "log": log,
        "attention_only": "MLP c_fc/c_proj weights and biases are zero and frozen: mlp_out == 0 exactly",
    }
    (out / "training.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arch", default="gpt2", choices=["llama", "gpt2"])
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN)
    ap.add_argument("--warm-start-steps", type=int, default=400)
    ap.add_argument("--induction-warm-start-steps", type=int, default=600)
    ap.add_argument("--induction-warm-start-lr", type=float, default=1e-2)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    info = train(a.out, seed=a.seed, steps=a.steps, batch=a.batch, lr=a.lr, threads=a.threads, arch=a.arch, seq_len=a.seq_len, warm_start_steps=a.warm_start_steps,
                 induction_warm_start_steps=a.induction_warm_start_steps,
                 induction_warm_start_lr=a.induction_warm_start_lr,
                 progress=not a.no_progress)
    print(json.dumps(info["eval"]), f"seconds={info['seconds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
