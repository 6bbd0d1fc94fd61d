"""Head detectors: previous-token, duplicate-token and induction scores; an OV copying score.

Attention-pattern scores follow TransformerLens's ``head_detector.detect_head`` exactly for its two
error measures (tested against it on the TL bridge):

- ``"mul"``: ``sum(pattern * detection) / sum(pattern)`` over the whole ``[q, k]`` matrix (after
  optionally zeroing the BOS column / the diagonal), averaged over sequences.
- ``"abs"``: ``1 - round(mean|pattern - detection| * seq_len, 3)``.

On ``[BOS] + s + s`` the whole-matrix ``"mul"`` score of a *perfect* induction head is only about
one half, because the first copy's query rows have no target. So we also report
``"target"``, the definition of Olsson et al. (2022, "In-context Learning and Induction Heads"):
the attention mass on the target positions averaged over the query positions that *have* a target
(for induction: the token after the previous occurrence of the current token; for previous-token:
the previous position; for duplicate-token: earlier occurrences of the current token). It is 1 for a
perfect head of that type; it is the score the acceptance thresholds (> 0.8) refer to. Each score
comes with a bootstrap CI over sequences.

Copying score (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"): the OV
circuit ``W_E W_V W_O W_U`` of a copying head has mostly positive eigenvalues. We report
``sum(lambda) / sum(|lambda|)`` of its non-zero eigenvalues, computed from the equivalent
``d_model x d_model`` matrix ``W_V W_O W_U W_E`` (cyclic permutation), with the layer's first norm
weight folded into ``W_V`` and the final norm weight into ``W_U`` (norm scales and biases otherwise
ignored, as in the paper's attention-only analysis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from workbench.errors import InputError, check_count
from workbench.results import Provenance, data_hash
from workbench.sites import Site
from workbench.stats import Estimate, mean_estimate

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["HEAD_KINDS", "repeated_random_tokens", "detection_pattern", "pattern_scores", "HeadScores", "head_scores",
           "copying_scores", "CopyingScores", "W_V"]

HEAD_KINDS = ("previous_token", "duplicate_token", "induction")


def repeated_random_tokens(model: Model, n_seqs: int = 10, half: int = 50, *, seed: int = 0, low: int | None = None,
                           high: int | None = None, bos: bool | None = None) -> torch.Tensor:
    """``[n_seqs, (1) + 2 * half]`` token ids: optional BOS, then ``half`` random tokens, repeated once.

    Tokens are drawn uniformly from ``[low, high)`` (default: ids 0..255 for vocabularies under 1000, else
    ``[1000, min(vocab, 20000))`` to avoid special and byte tokens); BOS is prepended when the model has one
    (``bos=None``) so every sequence starts like a document.
    """
    n_seqs, half = check_count(n_seqs, "n_seqs"), check_count(half, "half")
    V = model.facts.d_vocab
    if low is None:
        low = 0 if V < 1000 else 1000
    if high is None:
        high = min(V, 256) if V < 1000 else min(V, 20000)
    gen = torch.Generator().manual_seed(int(seed))
    s = torch.randint(low, high, (n_seqs, half), generator=gen)
    ids = torch.cat([s, s], dim=1)
    use_bos = (model.facts.bos_token_id is not None) if bos is None else bos
    if use_bos:
        ids = torch.cat([torch.full((n_seqs, 1), model.facts.bos_token_id, dtype=torch.long), ids], dim=1)
    return ids.to(model.device)


def detection_pattern(kind: str, tokens: torch.Tensor) -> torch.Tensor:
    """TransformerLens's detection patterns (``[T, T]``, lower-triangular, 0/1) for one sequence."""
    T = tokens.shape[-1]
    t = tokens.reshape(-1).cpu()
    if kind == "previous_token":
        det = torch.zeros(T, T)
        det[1:, :-1] = torch.eye(T - 1)
        return torch.tril(det)
    eq = (t[None, :] == t[:, None]).float()
    eq.fill_diagonal_(0)
    dup = torch.tril(eq)
    if kind == "duplicate_token":
        return dup
    if kind == "induction":
        shifted = torch.roll(dup, shifts=1, dims=1)
        shifted[:, 0] = 0
        return torch.tril(shifted)
    raise ValueError(f"unknown head kind {kind!r}; choose from {HEAD_KINDS}")


def pattern_scores(pattern: torch.Tensor, det: torch.Tensor, measure: str, *, exclude_bos: bool = False,
                   exclude_current_token: bool = False) -> torch.Tensor:
    """Scores of every head from one sequence's patterns ``[n_heads, T, T]`` and a detection pattern."""
    p = pattern.float().clone()
    det = det.to(p.device)
    if measure == "mul":
        if exclude_bos:
            p[:, :, 0] = 0
        if exclude_current_token:
            p.diagonal(dim1=-2, dim2=-1).zero_()
        return (p * det).sum((-1, -2)) / p.sum((-1, -2))
    if measure == "abs":
        d = (p - det).abs()
        T = d.shape[-1]
        if exclude_bos:
            d[:, :, 0] = 0
        if exclude_current_token:
            d.diagonal(dim1=-2, dim2=-1).zero_()
        raw = d.mean((-1, -2)) * T
        return 1 - torch.round(raw * 1000) / 1000
    if measure == "target":
        rows = det.sum(-1) > 0
        if not bool(rows.any()):
            raise ValueError("no query position has a target position in this sequence (no repeated tokens?)")
        return (p * det).sum(-1)[:, rows].mean(-1)
    raise ValueError(f"measure must be 'mul', 'abs' or 'target', got {measure!r}")


@dataclass
class HeadScores:
    """Scores ``[n_layers, n_heads]`` per head kind and measure, with per-sequence values for CIs.

    ``scores[kind][measure]`` is the mean over sequences; ``per_seq[kind][measure]`` is
    ``[n_seqs, n_layers, n_heads]``. ``estimate(kind, layer, head)`` gives a bootstrap CI over sequences.
    """

    scores: dict[str, dict[str, torch.Tensor]]
    per_seq: dict[str, dict[str, torch.Tensor]]
    n_seqs: int
    seq_len: int
    provenance: Provenance = field(default_factory=Provenance)

    def get(self, kind: str = "induction", measure: str = "target") -> torch.Tensor:
        return self.scores[kind][measure]

    def estimate(self, kind: str, layer: int, head: int, measure: str = "target", seed: int = 0) -> Estimate:
        return mean_estimate(self.per_seq[kind][measure][:, layer, head].double().numpy(), seed=seed)

    def top(self, kind: str = "induction", k: int = 5, measure: str = "target") -> list[tuple[int, int, float]]:
        s = self.scores[kind][measure]
        order = torch.argsort(s.reshape(-1), descending=True)[:k]
        H = s.shape[1]
        return [(int(o) // H, int(o) % H, float(s.reshape(-1)[o])) for o in order]

    def to_dataframe(self, ci: bool = False, seed: int = 0):
        import pandas as pd

        rows = []
        for kind, by_m in self.scores.items():
            for measure, s in by_m.items():
                L, H = s.shape
                for layer in range(L):
                    for h in range(H):
                        r = {"kind": kind, "measure": measure, "layer": layer, "head": h, "score": float(s[layer, h]),
                             "n_seqs": self.n_seqs}
                        if ci and measure == "target":
                            e = self.estimate(kind, layer, h, measure, seed)
                            r["ci_low"], r["ci_high"] = e.ci_low, e.ci_high
                        rows.append(r)
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The top three heads of each kind (target measure where computed) over how many sequences."""
        parts = []
        for kind, by_m in self.scores.items():
            measure = "target" if "target" in by_m else next(iter(by_m))
            top = ", ".join(f"L{a}H{b} {v:.2f}" for a, b, v in self.top(kind, 3, measure))
            parts.append(f"{kind} ({measure}): {top}")
        return f"head scores over {self.n_seqs} sequences of {self.seq_len} tokens; top heads: " + "; ".join(parts)


@torch.inference_mode()
def head_scores(model: Model, tokens: torch.Tensor | None = None, *, kinds: Sequence[str] = HEAD_KINDS,
                measures: Sequence[str] = ("target", "mul", "abs"), n_seqs: int = 10, half: int = 50, seed: int = 0,
                exclude_bos: bool = False, exclude_current_token: bool = False, batch_size: int = 8) -> HeadScores:
    """Previous-token, duplicate-token and induction scores of every head.

    ``tokens``: ``[n_seqs, T]`` sequences (default :func:`repeated_random_tokens` with ``n_seqs``, ``half``,
    ``seed``). Patterns are read with :meth:`HookedModel.run_with_cache` (either backend).
    """
    check_count(batch_size, "batch_size")
    if tokens is None:
        tokens = repeated_random_tokens(model, n_seqs, half, seed=seed)
    tokens = tokens if tokens.ndim == 2 else tokens[None]
    n, T = tokens.shape
    if n == 0 or T < 2:
        raise InputError(f"head_scores needs at least one sequence of >= 2 tokens; got tokens of shape {tuple(tokens.shape)}")
    N, H = model.n_layers, model.facts.n_heads
    per = {k: {m: torch.zeros(n, N, H) for m in measures} for k in kinds}
    sites = [Site("pattern", L) for L in range(N)]
    for i in range(0, n, batch_size):
        chunk = tokens[i:i + batch_size]
        _, cache = model.run_with_cache(chunk, sites, logits=None)
        for j in range(len(chunk)):
            dets = {k: detection_pattern(k, chunk[j]) for k in kinds}
            for L in range(N):
                pat = cache[Site("pattern", L)][j]
                for k in kinds:
                    for m in measures:
                        per[k][m][i + j, L] = pattern_scores(pat, dets[k], m, exclude_bos=exclude_bos,
                                                             exclude_current_token=exclude_current_token).cpu()
    scores = {k: {m: per[k][m].mean(0) for m in measures} for k in kinds}
    prov = model.provenance(data_hash=data_hash(tokens), seed=seed, sites=tuple(s.name for s in sites),
                            extra={"method": "head_detectors", "exclude_bos": exclude_bos,
                                   "exclude_current_token": exclude_current_token, "seq_len": T})
    return HeadScores(scores, per, n, T, prov)


# ------------------------------------------------------------------------------------------------------
# OV copying score
# ------------------------------------------------------------------------------------------------------

def W_V(model: Model, layer: int) -> torch.Tensor:
    """Value weights ``[n_kv_heads, d_model, d_head]`` of ``layer`` (``v = ln1(x) @ W_V[kv]``, bias ignored)."""
    arch, f = model.arch, model.facts
    if arch.qkv == "separate":
        w = model.layer_module(layer, "v").weight  # [kv*dh, d]
        return w.T.reshape(f.d_model, f.n_kv_heads, f.d_head).permute(1, 0, 2)
    mod = model.layer_module(layer, "q")
    qd, kvd = f.n_heads * f.d_head, f.n_kv_heads * f.d_head
    if arch.qkv == "gpt2":  # Conv1D weight [d, q | k | v]
        w = mod.weight[:, qd + kvd:]
        return w.reshape(f.d_model, f.n_kv_heads, f.d_head).permute(1, 0, 2)
    if arch.qkv == "concat":  # Linear weight [q | k | v, d] (Phi-3)
        w = mod.weight[qd + kvd:]  # [kv*dh, d]
        return w.T.reshape(f.d_model, f.n_kv_heads, f.d_head).permute(1, 0, 2)
    if arch.qkv == "neox":  # Linear weight [H * 3 * dh, d], per head [q | k | v]
        w = mod.weight.reshape(f.n_heads, 3, f.d_head, f.d_model)[:, 2]  # [H, dh, d]
        return w.permute(0, 2, 1)
    raise NotImplementedError(f"{arch.family}: W_V needs a known q/k/v layout (this family's is {arch.qkv!r})")


@dataclass
class CopyingScores:
    """``scores``: ``[n_layers, n_heads]`` ``sum(lambda) / sum(|lambda|)`` of each head's OV circuit."""

    scores: torch.Tensor
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self):
        import pandas as pd

        L, H = self.scores.shape
        return pd.DataFrame([{"layer": a, "head": b, "copying_score": float(self.scores[a, b])}
                             for a in range(L) for b in range(H)])

    def summary(self) -> str:
        """How many heads copy (positive OV eigenvalue score) and the three strongest."""
        s = self.scores
        H = s.shape[1]
        order = torch.argsort(s.reshape(-1), descending=True)[:3]
        top = ", ".join(f"L{int(o) // H}H{int(o) % H} {float(s.reshape(-1)[o]):.2f}" for o in order)
        return f"OV copying scores: {int((s > 0).sum())} of {s.numel()} heads positive; highest {top}"


@torch.inference_mode()
def copying_scores(model: Model) -> CopyingScores:
    """OV-circuit eigenvalue copying score of every head (see the module docstring)."""
    f = model.facts
    W_E = model.W_E.detach().float()  # [V, d]
    W_U = model.norm_weight(model.final_norm_module).to(W_E.device)[:, None] * model.W_U.detach().float()  # [d, V]
    C = W_U @ W_E  # [d, d]
    group = f.n_heads // f.n_kv_heads
    out = torch.zeros(f.n_layers, f.n_heads)
    for L in range(f.n_layers):
        wv = model.norm_weight(model.layer_module(L, "ln1")).to(W_E.device)[None, :, None] * W_V(model, L).detach().float()
        wo = model.W_O(L).detach().float()  # [H, dh, d]
        for h in range(f.n_heads):
            M = wv[h // group] @ wo[h] @ C  # [d, d], rank <= d_head
            ev = torch.linalg.eigvals(M.double())
            ev = ev[ev.abs() > 1e-9 * ev.abs().max()]
            out[L, h] = float(ev.real.sum() / ev.abs().sum())
    return CopyingScores(out, model.provenance(extra={"method": "ov_copying_score"}))
