"""Canonical site names, shared by every method and both backends.

A *site* is a place in the forward pass where an activation is read or written:

==============  ========================  ============================================
kind            canonical shape           meaning
==============  ========================  ============================================
``resid_pre``   ``[batch, pos, d_model]``   residual stream entering block L
``resid_mid``   ``[batch, pos, d_model]``   after attention, before the MLP (sequential
                                            blocks only; parallel-residual models such as
                                            GPT-NeoX/Pythia have no such point)
``resid_post``  ``[batch, pos, d_model]``   residual stream leaving block L
``attn_out``    ``[batch, pos, d_model]``   attention output added to the residual
``mlp_out``     ``[batch, pos, d_model]``   MLP output added to the residual
``q``           ``[batch, pos, n_heads, d_head]``     queries (before rotary embedding)
``k``, ``v``    ``[batch, pos, n_kv_heads, d_head]``  keys / values (before rotary; KV
                                                       heads under grouped-query attention)
``z``           ``[batch, pos, n_heads, d_head]``     per-head attention-weighted values
``pattern``     ``[batch, n_heads, q_pos, k_pos]``    attention probabilities
``head_out``    ``[batch, pos, n_heads, d_model]``    each head's write into the residual
                                                       (``z[h] @ W_O[h]``, without the
                                                       output bias)
``router``      ``[batch, pos, n_experts]``           mixture-of-experts router logits
                                                       (MoE models only; read-only)
==============  ========================  ============================================

On families with norms after attention and MLP (Gemma 2/3, OLMo 2), ``attn_out`` and ``mlp_out``
are those norms' outputs: what is added to the residual stream (see :mod:`workbench.models.arch`).

The same shapes and names as TransformerLens (``blocks.L.hook_resid_post``,
``blocks.L.attn.hook_z``...), which are accepted as aliases. Strings are written
``"<kind>.<layer>"`` (``"resid_post.12"``) or ``"<kind>.<layer>.h<head>"`` (``"z.3.h5"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Union

from workbench.errors import WorkbenchError, close_matches, did_you_mean, hint_for

__all__ = [
    "Site", "SiteError", "SITE_KINDS", "RESID_KINDS", "HEAD_KINDS", "READ_ONLY_KINDS", "parse_site", "parse_sites", "site",
    "sites", "tl_hook_name", "EXECUTION_ORDER",
]

RESID_KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_KINDS = ("q", "k", "v", "z", "pattern", "head_out")
READ_ONLY_KINDS = ("router",)
SITE_KINDS = RESID_KINDS + HEAD_KINDS + READ_ONLY_KINDS

# Order in which the sites of one block run. Both backends visit sites in this order
# (nnsight requires it; interventions that read one site and write a later one rely on it).
EXECUTION_ORDER = {
    "resid_pre": 0, "q": 1, "k": 2, "v": 3, "pattern": 4, "z": 5, "head_out": 6,
    "attn_out": 7, "resid_mid": 8, "router": 8.5, "mlp_out": 9, "resid_post": 10,
}

_TL_NAMES = {
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "resid_post": "blocks.{L}.hook_resid_post",
    "attn_out": "blocks.{L}.hook_attn_out",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "q": "blocks.{L}.attn.hook_q",
    "k": "blocks.{L}.attn.hook_k",
    "v": "blocks.{L}.attn.hook_v",
    "z": "blocks.{L}.attn.hook_z",
    "pattern": "blocks.{L}.attn.hook_pattern",
    "head_out": "blocks.{L}.attn.hook_result",
    "router": "blocks.{L}.mlp.gate.hook_out",
}
_TL_ALIAS = re.compile(r"^blocks\.(\d+)\.(?:attn\.)?hook_(\w+)$")
_CANON = re.compile(r"^([a-z_]+)\.(-?\d+)(?:\.h(\d+))?$")
_TL_KIND = {
    "resid_pre": "resid_pre", "resid_mid": "resid_mid", "resid_post": "resid_post",
    "attn_out": "attn_out", "mlp_out": "mlp_out", "q": "q", "k": "k", "v": "v", "z": "z",
    "pattern": "pattern", "result": "head_out",
}


class SiteError(WorkbenchError, ValueError):
    """An unknown site, or a site this model does not have."""


@dataclass(frozen=True, order=True)
class Site:
    """A canonical site: ``kind`` at ``layer`` (and optionally one ``head``)."""

    kind: str
    layer: int
    head: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise SiteError(_unknown_kind_message(self.kind))
        if self.head is not None and self.kind not in HEAD_KINDS:
            raise SiteError(
                f"site {self.kind!r} has no heads; heads exist only at {', '.join(HEAD_KINDS)}"
            )

    @property
    def name(self) -> str:
        base = f"{self.kind}.{self.layer}"
        return base if self.head is None else f"{base}.h{self.head}"

    @property
    def whole(self) -> "Site":
        """The same site without a head selection."""
        return Site(self.kind, self.layer) if self.head is not None else self

    @property
    def is_head_site(self) -> bool:
        return self.kind in HEAD_KINDS

    @property
    def seq_dim(self) -> int:
        """Index of the position dimension in the canonical tensor (query position for pattern)."""
        return 2 if self.kind == "pattern" else 1

    @property
    def order_key(self) -> tuple[int, int]:
        return (self.layer, EXECUTION_ORDER[self.kind])

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Site({self.name!r})"


SiteLike = Union[Site, str, tuple]


def _unknown_kind_message(kind: str, suffix: str = "") -> str:
    close = close_matches(kind, SITE_KINDS + tuple(_TL_KIND), n=4, cutoff=0.5)
    hint = hint_for(list(dict.fromkeys(_TL_KIND.get(c, c) + suffix for c in close))[:3])
    what = f"site {kind + suffix!r}" if suffix else f"site kind {kind!r}"
    return f"unknown {what}.{hint} Valid kinds: {', '.join(SITE_KINDS)}."


def parse_site(spec: SiteLike) -> Site:
    """Parse ``"resid_post.3"``, ``"z.3.h5"``, a TransformerLens hook name, or a tuple.

    Raises :class:`SiteError` naming the closest valid names when the spec is unknown.
    """
    if isinstance(spec, Site):
        return spec
    if isinstance(spec, tuple):
        return Site(*spec)
    if not isinstance(spec, str):
        raise SiteError(f"a site is a Site, a string like 'resid_post.3' or a tuple; got {type(spec).__name__}")
    s = spec.strip()
    m = _CANON.match(s)
    if m:
        kind, layer, head = m.group(1), int(m.group(2)), m.group(3)
        if kind not in SITE_KINDS:
            raise SiteError(_unknown_kind_message(kind, s[len(kind):]))
        return Site(kind, layer, None if head is None else int(head))
    m = _TL_ALIAS.match(s)
    if m and m.group(2) in _TL_KIND:
        return Site(_TL_KIND[m.group(2)], int(m.group(1)))
    # Produce a helpful message: find the closest canonical spelling.
    kind_guess = re.split(r"[.\[]", s)[0]
    if kind_guess in SITE_KINDS:
        raise SiteError(
            f"cannot parse site {spec!r}: write '<kind>.<layer>' or '<kind>.<layer>.h<head>', "
            f"e.g. '{kind_guess}.0'" + (" or 'z.0.h3'" if kind_guess in HEAD_KINDS else "")
        )
    candidates = [f"{k}.0" for k in SITE_KINDS] + [n.format(L=0) for n in _TL_NAMES.values()]
    digits = re.findall(r"\d+", s)
    layer = digits[0] if digits else "0"
    candidates = [c.replace(".0", f".{layer}", 1) for c in candidates]
    hint = did_you_mean(s, candidates, n=3, cutoff=0.4)
    raise SiteError(f"unknown site {spec!r}.{hint} Valid kinds: {', '.join(SITE_KINDS)}.")


def site(kind: str, layer: int, head: int | None = None) -> Site:
    """Build a :class:`Site` (``site("resid_post", 3)``)."""
    return Site(kind, layer, head)


def parse_sites(specs: SiteLike | Iterable[SiteLike]) -> list[Site]:
    """A list of sites from one site (a :class:`Site`, ``"resid_post.3"``, a tuple) or an iterable of them.

    A bare string is one site, never a sequence of characters."""
    if isinstance(specs, (str, Site, tuple)):
        return [parse_site(specs)]
    try:
        items = list(specs)
    except TypeError:
        raise SiteError(f"sites must be a site or a list of sites, got {type(specs).__name__}") from None
    if not items:
        raise SiteError("no sites given; name at least one, e.g. ['resid_post.0']")
    return [parse_site(x) for x in items]


def sites(kind: str, layers: Iterable[int]) -> list[Site]:
    """The same kind at several layers: ``sites("resid_post", range(n_layers))``."""
    return [Site(kind, int(layer)) for layer in layers]


def tl_hook_name(s: Site) -> str:
    """TransformerLens hook name of a site (``head_out`` maps to ``hook_result``)."""
    return _TL_NAMES[s.kind].format(L=s.layer)
