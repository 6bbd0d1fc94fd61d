"""Interventions: what to do to an activation at a site, at which positions and heads.

An :class:`Intervention` is data (site, operation, value, positions, heads), applied the same
way by both backends. Build them with the constructors::

    add("resid_post.12", vector, alpha=4.0, positions="all")      # steering
    replace("resid_pre.5", clean_cache["resid_pre.5"], positions=[3])  # patching
    scale("z.9", 0.0, heads=[4])                                  # = zero-ablate head 4
    zero_ablate("z.9", heads=[4]); mean_ablate("z.9", mean_z9, heads=[4])
    project_out("resid_pre.7", direction)                         # directional ablation
    custom("mlp_out.3", lambda x, mask: x.clamp(max=1.0))

Values are either *feature-shaped* (the site's trailing dimensions: ``[d_model]`` for residual
sites, ``[d_head]`` or ``[n_heads, d_head]`` for ``z``...) and broadcast over the selected
positions, or *full activations* with the site's whole canonical shape (``[batch, pos, ...]``),
from which the selected positions are taken (activation patching). In :meth:`HookedModel.generate`
positions may also be a policy: ``"prompt"``, ``"generated"`` or ``"all"`` (see
:mod:`workbench.models.hooked`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from workbench.errors import WorkbenchError

from .sites import Site, SiteLike, parse_site

__all__ = [
    "Intervention", "InterventionError", "add", "replace", "scale", "zero_ablate", "mean_ablate",
    "project_out", "custom", "as_interventions",
]

OPS = ("add", "replace", "scale", "zero", "mean", "project_out", "fn")


class InterventionError(WorkbenchError, ValueError):
    pass


@dataclass(frozen=True, eq=False)
class Intervention:
    site: Site
    op: str
    value: Any = None
    alpha: float = 1.0
    positions: Any = "all"
    heads: tuple[int, ...] | None = None
    fn: Callable | None = None
    label: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InterventionError(f"unknown intervention op {self.op!r}; valid: {OPS}")
        if self.site.kind == "router":
            raise InterventionError(f"{self.site.name}: router logits are read-only (the block recomputes its routing "
                                    "from its input); intervene on the MLP's input or output instead")
        if self.heads is not None and not self.site.is_head_site:
            raise InterventionError(f"heads= given for {self.site.kind!r}, which has no heads")
        if self.site.head is not None:
            if self.heads is not None and tuple(self.heads) != (self.site.head,):
                raise InterventionError(f"site {self.site.name} names head {self.site.head} but heads={self.heads}")
            object.__setattr__(self, "heads", (self.site.head,))
            object.__setattr__(self, "site", self.site.whole)
        if self.op in ("add", "replace", "mean", "project_out") and self.value is None:
            raise InterventionError(f"{self.op} needs a value")
        if self.op == "fn" and not callable(self.fn):
            raise InterventionError("custom interventions need a callable fn(x, mask) -> x")
        # a NaN or inf here would turn every downstream logit into NaN and generations into b'\x00'...
        # with no error, so it is refused where it enters
        if not math.isfinite(float(self.alpha)):
            raise InterventionError(f"{self.op} at {self.site.name}: alpha={self.alpha} is not a finite number")
        if isinstance(self.value, torch.Tensor):
            if self.value.is_floating_point() or self.value.is_complex():
                bad = int((~torch.isfinite(self.value)).sum())
                if bad:
                    raise InterventionError(
                        f"{self.op} at {self.site.name}: the value has {bad} non-finite entr{'y' if bad == 1 else 'ies'} "
                        f"(NaN or inf) of {self.value.numel()}; check how the vector was computed (e.g. a mean over "
                        "an empty set, a division by a zero norm)"
                    )
        elif self.value is not None and isinstance(self.value, (int, float)) and not math.isfinite(float(self.value)):
            raise InterventionError(f"{self.op} at {self.site.name}: value={self.value} is not a finite number")

    # ------------------------------------------------------------------------------
    def feature_shape(self, facts: Any) -> tuple[int, ...]:
        """Trailing (per-position) shape of the canonical tensor at this site."""
        k = self.site.kind
        if k in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
            return (facts.d_model,)
        if k in ("q", "z"):
            return (facts.n_heads, facts.d_head)
        if k in ("k", "v"):
            return (facts.n_kv_heads, facts.d_head)
        if k == "head_out":
            return (facts.n_heads, facts.d_model)
        return ()  # pattern: [n_heads, q, k] handled by full-tensor values only

    def validate(self, facts: Any) -> None:
        """Check value widths against the model; raise an error that names the fix."""
        if self.value is None or self.op in ("scale",) or not isinstance(self.value, torch.Tensor):
            return
        fshape = self.feature_shape(facts)
        v = self.value
        what = {"add": "vector", "project_out": "direction", "mean": "mean activation",
                "replace": "replacement"}.get(self.op, "value")
        if not fshape:
            return
        width = fshape[-1]
        if v.shape[-1] != width:
            raise InterventionError(
                f"wrong {what} width for {self.site.name}: got {v.shape[-1]} (shape {tuple(v.shape)}), "
                f"but the site has width {width} (feature shape {fshape}). Check the layer/site the "
                f"vector was built for, or the model it came from."
            )
        if self.site.is_head_site and v.ndim >= 2 and v.ndim == len(fshape) and v.shape[-2] != fshape[0]:
            raise InterventionError(
                f"{what} for {self.site.name} has {v.shape[-2]} heads but the site has {fshape[0]}"
            )

    def is_full(self, x: torch.Tensor) -> bool:
        """Whether the value is a full activation (same ndim as the canonical tensor)."""
        return isinstance(self.value, torch.Tensor) and self.value.ndim == x.ndim

    def _head_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.heads is None:
            return None
        hdim = 1 if self.site.kind == "pattern" else 2
        n = x.shape[hdim]
        bad = [h for h in self.heads if not -n <= h < n]
        if bad:
            raise InterventionError(f"head(s) {bad} out of range for {self.site.name} ({n} heads: 0..{n - 1})")
        m = torch.zeros(n, dtype=torch.bool, device=x.device)
        m[list(self.heads)] = True
        shape = [1] * x.ndim
        shape[hdim] = n
        return m.view(shape)

    def _value_for(self, x: torch.Tensor) -> torch.Tensor:
        v = self.value.to(device=x.device, dtype=x.dtype)
        if self.is_full(x):
            if v.shape != x.shape:
                raise InterventionError(
                    f"full-activation value for {self.site.name} has shape {tuple(v.shape)} but the "
                    f"activation has shape {tuple(x.shape)}: clean and corrupt inputs must have the "
                    f"same batch size and number of tokens"
                )
            return v
        if self.site.is_head_site and self.site.kind != "pattern" and v.ndim == 1:
            v = v.view(1, -1)  # one vector for every selected head
        return v

    def apply(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Return the intervened activation (never modifies ``x`` in place).

        ``mask`` is ``[batch, seq]`` over the positions of this forward pass (padding is never
        selected). A full-activation value must have exactly the activation's shape.
        """
        if self.op == "add":
            y = x + self.alpha * self._value_for(x)
        elif self.op == "replace":
            y = self._value_for(x).expand_as(x)
        elif self.op == "scale":
            y = x * float(self.value if self.value is not None else self.alpha)
        elif self.op == "zero":
            y = torch.zeros_like(x)
        elif self.op == "mean":
            y = self._value_for(x).expand_as(x)
        elif self.op == "project_out":
            r = self._value_for(x)
            r = r / r.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            y = x - (x * r).sum(-1, keepdim=True) * r
        else:
            y = self.fn(x, mask)
            if not isinstance(y, torch.Tensor) or y.shape != x.shape:
                raise InterventionError(f"custom intervention at {self.site.name} must return a tensor of shape {tuple(x.shape)}")
        sd = self.site.seq_dim
        shape = [1] * x.ndim
        shape[0], shape[sd] = mask.shape[0], mask.shape[1]
        sel = mask.to(x.device).view(shape)  # on a model split over devices, x may live elsewhere
        hm = self._head_mask(x)
        if hm is not None:
            sel = sel & hm
        return torch.where(sel, y, x)


def _site(s: SiteLike) -> Site:
    return parse_site(s)


def _heads(heads: Sequence[int] | int | None) -> tuple[int, ...] | None:
    if heads is None:
        return None
    return (int(heads),) if isinstance(heads, int) else tuple(int(h) for h in heads)


def add(site: SiteLike, vector: torch.Tensor, alpha: float = 1.0, positions: Any = "all",
        heads: Sequence[int] | int | None = None, label: str | None = None) -> Intervention:
    """``x += alpha * vector`` at the selected positions (and heads)."""
    return Intervention(_site(site), "add", torch.as_tensor(vector), float(alpha), positions, _heads(heads), label=label)


def replace(site: SiteLike, value: torch.Tensor, positions: Any = "all",
            heads: Sequence[int] | int | None = None, label: str | None = None) -> Intervention:
    """Set the activation to ``value`` (feature-shaped, or a full activation to patch in)."""
    return Intervention(_site(site), "replace", torch.as_tensor(value), 1.0, positions, _heads(heads), label=label)


def scale(site: SiteLike, factor: float, positions: Any = "all",
          heads: Sequence[int] | int | None = None, label: str | None = None) -> Intervention:
    """``x *= factor``."""
    return Intervention(_site(site), "scale", float(factor), 1.0, positions, _heads(heads), label=label)


def zero_ablate(site: SiteLike, positions: Any = "all", heads: Sequence[int] | int | None = None,
                label: str | None = None) -> Intervention:
    """Set the activation to zero."""
    return Intervention(_site(site), "zero", None, 1.0, positions, _heads(heads), label=label)


def mean_ablate(site: SiteLike, mean: torch.Tensor, positions: Any = "all",
                heads: Sequence[int] | int | None = None, label: str | None = None) -> Intervention:
    """Set the activation to a mean activation (feature-shaped, e.g. over a reference set)."""
    return Intervention(_site(site), "mean", torch.as_tensor(mean), 1.0, positions, _heads(heads), label=label)


def project_out(site: SiteLike, direction: torch.Tensor, positions: Any = "all",
                heads: Sequence[int] | int | None = None, label: str | None = None) -> Intervention:
    """Directional ablation ``x -= (x . r) r`` with ``r = direction / |direction|`` (Arditi et al. 2024)."""
    return Intervention(_site(site), "project_out", torch.as_tensor(direction), 1.0, positions, _heads(heads), label=label)


def custom(site: SiteLike, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], positions: Any = "all",
           label: str | None = None) -> Intervention:
    """Any function ``fn(x, mask) -> x`` of the canonical activation and the position mask."""
    return Intervention(_site(site), "fn", None, 1.0, positions, None, fn=fn, label=label)


def as_interventions(items: Any) -> list[Intervention]:
    """Normalise ``None`` / one intervention / an iterable of them to a list."""
    if items is None:
        return []
    if isinstance(items, Intervention):
        return [items]
    out = list(items)
    for it in out:
        if not isinstance(it, Intervention):
            raise InterventionError(f"expected Intervention objects, got {type(it).__name__}")
    return out
