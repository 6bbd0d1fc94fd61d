"""Tokenised batches and position specs: BOS, padding and positions are decided here, once.

Both backends receive exactly the ``input_ids``, ``attention_mask`` and ``position_ids`` of a
:class:`Tokens`, so the same prompt gives the same tokens through TransformerLens and nnsight
(TransformerLens would otherwise prepend BOS on its own; nnsight follows the tokenizer).

Positions are given relative to each prompt's *real* tokens, whatever the padding:

- ``"all"`` (or ``"prompt"``): every real token; ``"last"``: the last real token;
  ``"first"``: the first real token;
- an ``int`` (negative counts from the end), a ``list`` of ints, or a ``slice``;
- a boolean tensor ``[batch, seq]`` over the padded batch, used as is.

With left padding (the default) position ``-1`` is column ``seq-1`` for every row, and
``position_ids`` restart at 0 at each row's first real token, so a left-padded prompt gives
the same activations as the same prompt alone (tested to 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch

from workbench.errors import WorkbenchError

__all__ = ["Tokens", "PositionSpec", "resolve_positions", "PositionError", "ContextLengthError", "PaddingError",
           "GENERATION_POLICIES"]

PositionSpec = Union[str, int, slice, Sequence[int], torch.Tensor]
GENERATION_POLICIES = ("prompt", "generated", "all")


class PositionError(WorkbenchError, ValueError):
    pass


class ContextLengthError(WorkbenchError, ValueError):
    """A prompt plus the tokens asked for does not fit the model's context window."""


class PaddingError(WorkbenchError, ValueError):
    """Prompts of different lengths cannot be padded as asked (no pad token, or an unknown padding side)."""


@dataclass
class Tokens:
    """A padded batch of token ids with its attention mask.

    Attributes:
        input_ids: ``[batch, seq]`` token ids (pad id at padded columns).
        attention_mask: ``[batch, seq]`` 1 for real tokens, 0 for padding.
        padding_side: ``"left"`` or ``"right"``.
        texts: the exact strings tokenised (after any chat template), when known.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    padding_side: str = "left"
    texts: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_ids.ndim != 2 or self.attention_mask.shape != self.input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be [batch, seq]; got "
                f"{tuple(self.input_ids.shape)} and {tuple(self.attention_mask.shape)}"
            )
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        am = self.attention_mask.bool()
        if (am.sum(1) == 0).any():
            rows = torch.nonzero(am.sum(1) == 0).flatten().tolist()
            raise ValueError(f"rows {rows} have no real tokens (empty prompts)")
        # Padding must be contiguous on the declared side.
        if self.padding_side == "left":
            ok = (am.int().diff(dim=1) >= 0).all()
        else:
            ok = (am.int().diff(dim=1) <= 0).all()
        if not ok:
            raise ValueError(
                f"attention_mask is not {self.padding_side}-padded: padding must be contiguous at "
                f"the {self.padding_side} of each row (got mask {self.attention_mask.tolist()[:3]}...)"
            )

    # -- shape facts -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)  # type: ignore[return-value]

    @property
    def lengths(self) -> torch.Tensor:
        """Real tokens per row, ``[batch]``."""
        return self.attention_mask.sum(1)

    @property
    def starts(self) -> torch.Tensor:
        """Column of each row's first real token, ``[batch]``."""
        if self.padding_side == "left":
            return self.input_ids.shape[1] - self.lengths
        return torch.zeros(len(self), dtype=torch.long, device=self.input_ids.device)

    @property
    def last_index(self) -> torch.Tensor:
        """Column of each row's last real token, ``[batch]``."""
        return self.starts + self.lengths - 1

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions counted from each row's first real token (0 at padding)."""
        am = self.attention_mask.long()
        return (am.cumsum(1) - 1).clamp(min=0)

    @property
    def is_uniform_last(self) -> bool:
        """True when every row's last real token is the final column (left padding or no padding)."""
        return bool((self.last_index == self.input_ids.shape[1] - 1).all())

    def to(self, device: torch.device | str) -> "Tokens":
        return Tokens(self.input_ids.to(device), self.attention_mask.to(device), self.padding_side,
                      self.texts, dict(self.meta))

    def select(self, rows: Sequence[int] | slice) -> "Tokens":
        """A sub-batch (padding columns shared by all selected rows are kept)."""
        idx = torch.arange(len(self))[rows] if isinstance(rows, slice) else torch.as_tensor(list(rows))
        texts = [self.texts[i] for i in idx.tolist()] if self.texts is not None else None
        return Tokens(self.input_ids[idx], self.attention_mask[idx], self.padding_side, texts, dict(self.meta))

    def real_tokens(self, row: int) -> list[int]:
        am = self.attention_mask[row].bool()
        return self.input_ids[row][am].tolist()


def _row_positions(spec: PositionSpec, n: int, row: int) -> list[int]:
    """Indices into a row's real tokens (0..n-1) selected by ``spec``."""
    if isinstance(spec, str):
        if spec in ("all", "prompt"):
            return list(range(n))
        if spec == "last":
            return [n - 1]
        if spec == "first":
            return [0]
        raise PositionError(
            f"unknown position {spec!r}; use 'all', 'last', 'first', an int, a list of ints, a slice, "
            f"or (in generate) one of {GENERATION_POLICIES}"
        )
    if isinstance(spec, slice):
        return list(range(n))[spec]
    items = [spec] if isinstance(spec, int) else list(spec)
    out = []
    for i in items:
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise PositionError(f"position {i} is out of range for prompt {row}, which has {n} tokens")
        out.append(j)
    return out


def resolve_positions(spec: PositionSpec, tokens: Tokens) -> torch.Tensor:
    """Boolean mask ``[batch, seq]`` of the columns ``spec`` selects in each row."""
    b, t = tokens.shape
    if isinstance(spec, torch.Tensor):
        if spec.dtype != torch.bool or tuple(spec.shape) != (b, t):
            raise PositionError(f"a position mask must be a bool tensor of shape {(b, t)}; got {spec.dtype} {tuple(spec.shape)}")
        return spec.to(tokens.input_ids.device)
    if spec == "generated":
        raise PositionError(
            "positions='generated' is a policy for interventions (in a forward pass it means each row's "
            "last real token); to select token positions use 'last' (the position whose logits predict "
            "the next token)"
        )
    mask = torch.zeros(b, t, dtype=torch.bool)
    starts, lengths = tokens.starts.tolist(), tokens.lengths.tolist()
    if spec in ("all", "prompt"):
        return tokens.attention_mask.bool().clone()
    for row in range(b):
        for j in _row_positions(spec, lengths[row], row):
            mask[row, starts[row] + j] = True
    return mask.to(tokens.input_ids.device)
