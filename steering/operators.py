"""Operators: what steering does to the residual stream, and the context manager that applies it.

- :class:`Add`: ``h += c * v`` at one site (CAA, Rimsky et al. 2024; ActAdd, Turner et al. 2023;
  persona steering ``h += alpha * v`` at every decoding step, Chen et al. 2025). The coefficient
  ``c`` depends on ``scale``:

  - ``"multiplier"``: ``c * v`` with ``v`` as built (a CAA multiplier: ``v`` is the raw mean
    difference, so ``alpha=1`` adds exactly the difference between the two classes' means);
  - ``"unit"``: ``c * v / |v|`` (``alpha`` is the norm of what is added);
  - ``"relative"``: ``c * R * v / |v|`` where ``R`` is the mean residual norm at the site
    (:func:`steering.calibration.residual_norms`), so ``alpha=0.5`` adds half a typical residual.

- :class:`Ablate`: directional ablation ``x -= (x . r) r`` with ``r = v / |v|`` at every layer
  and position of every component that writes the residual stream (``resid_pre``, ``attn_out``,
  ``mlp_out``), so no layer ever sees the direction (Arditi et al. 2024).
- :class:`Clamp`: set the component along ``r`` to a fixed value: ``x + (value - x . r) r``.

Positions are an explicit policy, as in :mod:`workbench.models.hooked`:

- ``"prompt"``: every prompt token (prefill only, nothing during decoding);
- ``"generated"``: the last prompt token and every generated token: the positions whose
  outputs produce generated tokens, so the **first generated token is steered**. In a plain
  forward pass (A/B scoring) this is the last token;
- ``"all"``: every prompt token and every generated token;
- an index spec (``"last"``, ``"first"``, an int, a list of ints, a slice, a bool mask): those
  prompt tokens, prefill only.

Several operators at once: ``with steer(model, a.at(12, 4.0), b.at(14, -2.0), Ablate(r)):``;
operators at the same site apply in the order given.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import torch

from workbench.errors import WorkbenchError
from workbench.interventions import Intervention, add, custom, project_out
from workbench.layers import resolve_layers
from workbench.sites import Site, parse_site

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = [
    "SteeringError", "Add", "Ablate", "Clamp", "steer", "interventions_for", "check_positions", "POSITION_POLICIES",
    "SCALES",
]

POSITION_POLICIES = ("prompt", "generated", "all")
_INDEX_WORDS = ("last", "first")
SCALES = ("multiplier", "unit", "relative")


class SteeringError(WorkbenchError, ValueError):
    """A steering request that cannot be applied as asked (the message names the fix)."""


def check_positions(positions: Any) -> Any:
    """Validate a position policy or index spec; return it unchanged."""
    if isinstance(positions, str):
        if positions in POSITION_POLICIES or positions in _INDEX_WORDS:
            return positions
    elif isinstance(positions, bool):
        pass
    elif isinstance(positions, (int, slice)):
        return positions
    elif isinstance(positions, torch.Tensor):
        if positions.dtype == torch.bool and positions.ndim == 2:
            return positions
    elif isinstance(positions, (list, tuple)) and positions and all(
            isinstance(p, int) and not isinstance(p, bool) for p in positions):
        return list(positions)
    raise SteeringError(
        f"unknown positions {positions!r}: use a policy {POSITION_POLICIES} ('generated' steers the last "
        f"prompt token and every generated token), or prompt indices: 'last', 'first', an int, a list of "
        f"ints, a slice, or a [batch, seq] bool mask"
    )


def _check_vector(v: Any, what: str) -> torch.Tensor:
    v = torch.as_tensor(v).detach()
    if v.ndim != 1:
        raise SteeringError(f"{what} must be a 1-D tensor [d_model]; got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise SteeringError(f"{what} has non-finite entries")
    return v.float()


def _check_width(model: Model, v: torch.Tensor, site: Site, what: str, source: str | None = None) -> None:
    d = model.facts.d_model
    if v.shape[0] != d:
        src = f" (built for {source})" if source else ""
        raise SteeringError(
            f"wrong {what} width for {site.name}: the vector has {v.shape[0]} entries{src} but {model.name} has "
            f"d_model={d}. Use a vector built on this model (or at a residual site of the right width)."
        )


@dataclass(frozen=True, eq=False)
class Add:
    """``h += coefficient * v`` at ``site`` on ``positions`` (see the module docstring for ``scale``)."""

    site: Site
    vector: torch.Tensor
    alpha: float = 1.0
    positions: Any = "all"
    scale: str = "multiplier"
    reference_norm: float | None = None
    label: str | None = None
    source_model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "site", parse_site(self.site))
        object.__setattr__(self, "vector", _check_vector(self.vector, f"steering vector at {self.site.name}"))
        a = float(self.alpha)
        if not math.isfinite(a):
            raise SteeringError(f"alpha must be finite, got {self.alpha!r}")
        object.__setattr__(self, "alpha", a)
        check_positions(self.positions)
        if self.scale not in SCALES:
            raise SteeringError(f"unknown scale {self.scale!r}; use one of {SCALES}")
        if self.scale in ("unit", "relative") and float(self.vector.norm()) == 0.0:
            raise SteeringError(f"the vector at {self.site.name} has zero norm; it cannot be normalised (scale={self.scale!r})")
        if self.scale == "relative":
            if self.reference_norm is None:
                raise SteeringError(
                    f"scale='relative' needs the mean residual norm at {self.site.name}: pass norms= "
                    f"(steering.residual_norms(model, prompts, layers=[{self.site.layer}], site='{self.site.kind}'))"
                )
            if not (self.reference_norm > 0 and math.isfinite(self.reference_norm)):
                raise SteeringError(f"reference_norm must be positive and finite, got {self.reference_norm}")

    def added(self) -> torch.Tensor:
        """The vector actually added at each selected position."""
        v = self.vector
        if self.scale == "multiplier":
            return self.alpha * v
        u = v / v.norm()
        if self.scale == "unit":
            return self.alpha * u
        return self.alpha * float(self.reference_norm) * u

    @property
    def added_norm(self) -> float:
        return float(self.added().norm())

    def interventions(self, model: Model) -> list[Intervention]:
        site = model.check_site(self.site)
        _check_width(model, self.vector, site, "steering vector", self.source_model)
        return [add(site, self.added(), 1.0, positions=self.positions, label=self.label or f"steer {site.name}")]

    def with_alpha(self, alpha: float) -> "Add":
        return Add(self.site, self.vector, alpha, self.positions, self.scale, self.reference_norm, self.label,
                   self.source_model)

    def describe(self) -> dict:
        return {"op": "add", "site": self.site.name, "alpha": self.alpha, "scale": self.scale,
                "positions": str(self.positions), "vector_norm": float(self.vector.norm()),
                "added_norm": self.added_norm, "reference_norm": self.reference_norm, "label": self.label}


@dataclass(frozen=True, eq=False)
class Ablate:
    """Directional ablation (Arditi et al. 2024): ``x -= (x . r) r`` at ``kinds`` of ``layers``.

    The default (every layer; ``resid_pre``, ``attn_out``, ``mlp_out``; every position,
    prompt and generated) removes the direction from everything written to the residual
    stream, so the residual stream at every layer is orthogonal to ``r``."""

    direction: torch.Tensor
    layers: Any = "all"
    kinds: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out")
    positions: Any = "all"
    label: str | None = None
    source_model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", _check_vector(self.direction, "ablation direction"))
        if float(self.direction.norm()) == 0.0:
            raise SteeringError("the ablation direction has zero norm")
        check_positions(self.positions)
        bad = [k for k in self.kinds if k not in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")]
        if bad:
            raise SteeringError(f"directional ablation applies to residual-width sites, not {bad}")
        object.__setattr__(self, "kinds", tuple(self.kinds))

    def interventions(self, model: Model) -> list[Intervention]:
        out = []
        for L in resolve_layers(model, self.layers):
            for k in self.kinds:
                if k == "resid_mid" and model.facts.parallel_attn_mlp:
                    continue
                site = model.check_site(Site(k, L))
                _check_width(model, self.direction, site, "ablation direction", self.source_model)
                out.append(project_out(site, self.direction, positions=self.positions, label=self.label or "ablate"))
        return out

    def describe(self) -> dict:
        return {"op": "ablate", "layers": str(self.layers), "kinds": list(self.kinds), "positions": str(self.positions),
                "label": self.label}


@dataclass(frozen=True, eq=False)
class Clamp:
    """Set the component of the activation along ``r = v / |v|`` to ``value``: ``x + (value - x . r) r``."""

    site: Site
    direction: torch.Tensor
    value: float = 0.0
    positions: Any = "all"
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "site", parse_site(self.site))
        object.__setattr__(self, "direction", _check_vector(self.direction, f"clamp direction at {self.site.name}"))
        if float(self.direction.norm()) == 0.0:
            raise SteeringError("the clamp direction has zero norm")
        check_positions(self.positions)

    def interventions(self, model: Model) -> list[Intervention]:
        site = model.check_site(self.site)
        _check_width(model, self.direction, site, "clamp direction")
        r0 = self.direction / self.direction.norm()
        value = float(self.value)

        def fn(x: torch.Tensor, mask: torch.Tensor, r0=r0, value=value) -> torch.Tensor:
            r = r0.to(device=x.device, dtype=x.dtype)
            return x + (value - (x * r).sum(-1, keepdim=True)) * r
        return [custom(site, fn, positions=self.positions, label=self.label or f"clamp {site.name}")]

    def describe(self) -> dict:
        return {"op": "clamp", "site": self.site.name, "value": self.value, "positions": str(self.positions),
                "label": self.label}


def interventions_for(model: Model, *operators: Any) -> list[Intervention]:
    """Flatten operators (and plain :class:`~workbench.interventions.Intervention` objects, or lists of
    either) into the interventions for ``model``, validated against it."""
    out: list[Intervention] = []
    for op in operators:
        if op is None:
            continue
        if isinstance(op, Intervention):
            out.append(op)
        elif isinstance(op, (list, tuple)):
            out.extend(interventions_for(model, *op))
        elif hasattr(op, "interventions"):
            out.extend(op.interventions(model))
        else:
            raise SteeringError(f"cannot steer with a {type(op).__name__}; pass Add/Ablate/Clamp operators or Interventions")
    return out


@contextlib.contextmanager
def steer(model: Model, *operators: Any) -> Iterator[Any]:
    """Keep ``operators`` active for every forward, cache and generate call inside the block.

    >>> import torch
    >>> from steering import SteeringVector
    >>> from workbench.models import load
    >>> model = load("tiny-llama", device="cpu")
    >>> vec = SteeringVector.from_tensor(torch.ones(model.facts.d_model), layer=1, model=model)
    >>> with steer(model, vec.at(1, alpha=4.0, positions="generated")):
    ...     out = model.generate(["Hello"], max_new_tokens=3)
    >>> out.settings["interventions"][0]["site"], len(out.completion_ids[0])
    ('resid_post.1', 3)
    """
    ivs = interventions_for(model, *operators)
    with model.hooks(ivs):
        yield model

