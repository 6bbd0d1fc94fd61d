"""Supervised fine-tuning of a LoRA adapter on (prompt, target) pairs: seeded, deterministic, CPU-sized.

The loss is the cross-entropy of the target tokens given the prompt (teacher forcing), averaged over each
example's target tokens and then over the batch, so a three-token answer letter weighs as much as a
forty-token reply. Only the positions that predict target tokens are unembedded (the vocabulary
projection of every position would cost a fifth of the forward pass on SmolLM2).

Tokenisation follows the shared A/B scorer: ``prompt + target`` is tokenised as one string and the target
tokens are those after the longest common prefix with the tokenised prompt, so the tokens trained are
the tokens the scorers later read (``"(A)"`` after a chat template, ``"Yes"`` after the assistant header).

Determinism: examples are shuffled by ``random.Random(seed)`` per epoch, the adapter is initialised from
a ``torch.Generator`` seeded with ``seed``, training runs with ``threads`` torch threads (default 1:
reductions then do not depend on how many cores the machine lends) and
``torch.use_deterministic_algorithms(True)``. The same base weights, data, config, torch build and CPU
kind give a bit-identical adapter (``tests/workbench/test_organisms.py`` trains twice and compares
hashes); another CPU kind or torch version may differ in the last bits.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import torch

from .lora import Adapter, LoRAConfig, attach, init_adapter

__all__ = ["SFTExample", "TrainConfig", "TrainLog", "train_adapter", "tokenize_example", "deterministic"]


class TrainingDataError(ValueError):
    """Training examples that cannot be used (empty target, too long...)."""


@dataclass(frozen=True)
class SFTExample:
    """One training pair: ``prompt`` (the exact text before the target, chat template included) and
    ``target`` (the text whose tokens are learned). ``kind`` tags the example for reporting."""

    prompt: str
    target: str
    kind: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (every field is recorded with the adapter).

    ``lr`` rises linearly over the first ``warmup`` fraction of the steps and then decays linearly to
    zero; AdamW with ``weight_decay``; gradients clipped to ``max_grad_norm``."""

    lora: LoRAConfig = field(default_factory=LoRAConfig)
    epochs: int = 1
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: float = 0.1
    max_grad_norm: float = 1.0
    max_tokens: int = 512
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora"] = self.lora.to_dict()
        return d


@dataclass
class TrainLog:
    """What training did: per-step mean loss, token counts and wall time (not part of the adapter)."""

    losses: list[float]
    n_examples: int
    n_steps: int
    n_tokens: int
    n_target_tokens: int
    seconds: float
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch threads and deterministic algorithms; restore both afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def tokenize_example(tokenizer: Any, ex: SFTExample, max_tokens: int) -> tuple[list[int], int]:
    """``(ids, n_prompt)``: token ids of prompt + target and how many of them are prompt context."""
    full = tokenizer(ex.prompt + ex.target, add_special_tokens=False)["input_ids"]
    pre = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
    k = 0
    while k < min(len(full), len(pre)) and full[k] == pre[k]:
        k += 1
    if k == 0:
        raise TrainingDataError(f"an example has no prompt tokens (prompt {ex.prompt[:60]!r}); every target needs "
                                "context to be predicted from")
    if k >= len(full):
        raise TrainingDataError(f"an example has an empty target after tokenisation (target {ex.target!r})")
    if len(full) > max_tokens:
        raise TrainingDataError(f"an example is {len(full)} tokens, over max_tokens={max_tokens} (prompt "
                                f"{ex.prompt[:60]!r}...); shorten it or raise TrainConfig.max_tokens")
    return full, k


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(round(cfg.warmup * total))) if cfg.warmup > 0 else 0
    if step < warm:
        return cfg.lr * (step + 1) / warm
    rest = max(1, total - warm)
    return cfg.lr * max(0.0, 1.0 - (step - warm) / rest)


def _target_logits(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, pred_rows: torch.Tensor,
                   pred_cols: torch.Tensor) -> torch.Tensor:
    """Logits at the given (row, position) pairs only: the decoder's final hidden states, then the head."""
    cfg = model.config
    if getattr(cfg, "final_logit_softcapping", None):
        raise TrainingDataError("models with final-logit soft-capping are not supported by this trainer")
    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    return model.get_output_embeddings()(hidden[pred_rows, pred_cols])


def train_adapter(model: torch.nn.Module, tokenizer: Any, examples: Sequence[SFTExample], config: TrainConfig, *,
                  progress: bool = False, desc: str = "training adapter") -> tuple[Adapter, TrainLog]:
    """Train a fresh LoRA adapter on ``model`` (a Hugging Face causal LM, left unchanged) and return it
    (float32 tensors) with its :class:`TrainLog`. See the module docstring for the loss and determinism."""
    if not examples:
        raise TrainingDataError("no training examples")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TrainingDataError("the tokenizer has neither a pad nor an EOS token to pad batches with")
    toks = [tokenize_example(tokenizer, ex, config.max_tokens) for ex in examples]
    n = len(toks)
    bs = config.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * config.epochs
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout: the adapter is the only thing that changes
    t0 = time.time()
    losses: list[float] = []
    n_tok = n_tgt = 0
    with deterministic(config.threads):
        adapter = init_adapter(model, config.lora, seed=config.seed)
        adapter.tensors = {k: (a.to(dev), b.to(dev)) for k, (a, b) in adapter.tensors.items()}
        params = adapter.parameters()
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=desc, unit="step")
        rng = random.Random(config.seed)
        step = 0
        with attach(model, adapter):
            for _epoch in range(config.epochs):
                order = list(range(n))
                rng.shuffle(order)
                for s in range(0, n, bs):
                    batch = [toks[i] for i in order[s:s + bs]]
                    T = max(len(ids) for ids, _ in batch)
                    ids = torch.full((len(batch), T), pad, dtype=torch.long)
                    mask = torch.zeros((len(batch), T), dtype=torch.long)
                    rows, cols, tgts, owner = [], [], [], []
                    for r, (x, k) in enumerate(batch):
                        ids[r, :len(x)] = torch.tensor(x)
                        mask[r, :len(x)] = 1
                        for t in range(k, len(x)):  # position t - 1 predicts token t
                            rows.append(r)
                            cols.append(t - 1)
                            tgts.append(x[t])
                            owner.append(r)
                    n_tok += int(mask.sum())
                    n_tgt += len(tgts)
                    for g in opt.param_groups:
                        g["lr"] = _lr_at(step, total, config)
                    logits = _target_logits(model, ids.to(dev), mask.to(dev), torch.tensor(rows, device=dev),
                                            torch.tensor(cols, device=dev))
                    nll = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(tgts, device=dev),
                                                            reduction="none")
                    own = torch.tensor(owner, device=dev)
                    per_ex = torch.zeros(len(batch), device=dev).index_add(0, own, nll)
                    count = torch.zeros(len(batch), device=dev).index_add(0, own, torch.ones_like(nll))
                    loss = (per_ex / count).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    opt.step()
                    losses.append(round(float(loss.detach()), 5))
                    step += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if bar is not None:
            bar.close()
    model.train(was_training)
    trained = Adapter(config.lora, {k: (a.detach().cpu(), b.detach().cpu()) for k, (a, b) in adapter.tensors.items()})
    log = TrainLog(losses, n, total, n_tok, n_tgt, round(time.time() - t0, 1), config.threads)
    return trained, log
