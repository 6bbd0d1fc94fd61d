"""The scorer contract: a batch in, per-item values and an aggregate with a CI out.

A scorer is a callable ``scorer(prompts, outputs, *, groups=None, provenance=None)`` returning
a :class:`ScoreResult`. Scorers are registered by name (inspect_ai style) so experiments can
refer to them in configs::

    @register_scorer("refusal")
    class RefusalScorer: ...

    scorer = get_scorer("refusal", first_n_chars=200)
    result = scorer(prompts, completions)

Repeated prompts mean several generations of one prompt: unless ``groups`` says otherwise the
items are clustered by prompt text, and the aggregate's CI is a cluster bootstrap over prompts
(not over generations), see :func:`resolve_groups`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from workbench.registry import Registry, UnknownNameError
from workbench.results import Provenance, data_hash, to_jsonable
from workbench.stats import Estimate

__all__ = [
    "ScoreResult",
    "Scorer",
    "register_scorer",
    "get_scorer",
    "list_scorers",
    "UnknownScorerError",
    "resolve_groups",
]


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """Per-item behavioural scores and their aggregate.

    Attributes:
        scorer: registered name of the scorer that produced it.
        values: one float per item (1.0/0.0 for binary scorers; NaN only where the item
            could not be scored, e.g. an unparseable judge verdict, always counted in
            ``n_unscored`` and listed in ``details``).
        items: the prompts (or ids) the values belong to, in order.
        aggregate: the batch-level :class:`Estimate` (rate with Wilson CI, mean with bootstrap
            CI, cluster bootstrap over prompts when prompts repeat).
        details: per-item dicts (matched phrase, raw judge text, parse status...).
        groups: the cluster id per item used for the aggregate CI, or None.
        n_unscored: items whose value is NaN (excluded from the aggregate; reported).
        provenance: where the scores came from (``data_hash`` of prompts and outputs filled in).
    """

    scorer: str
    values: np.ndarray
    items: tuple[Any, ...]
    aggregate: Estimate
    details: tuple[Mapping[str, Any], ...] = ()
    groups: tuple[Any, ...] | None = None
    n_unscored: int = 0
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        v = np.array(self.values, dtype=float, copy=True)
        v.setflags(write=False)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "items", tuple(self.items))
        if len(self.items) != v.size:
            raise ValueError(f"ScoreResult has {v.size} values but {len(self.items)} items.")
        if self.details and len(self.details) != v.size:
            raise ValueError(f"ScoreResult has {v.size} values but {len(self.details)} details.")
        if self.groups is not None:
            object.__setattr__(self, "groups", tuple(self.groups))

    @property
    def n(self) -> int:
        return int(self.values.size)

    def to_dataframe(self) -> Any:
        """One row per item: item, value, group (if any), then the detail fields."""
        import pandas as pd

        df = pd.DataFrame({"item": list(self.items), "value": self.values})
        if self.groups is not None:
            df.insert(1, "group", list(self.groups))
        if self.details:
            det = pd.DataFrame([dict(d) for d in self.details])
            for col in det.columns:
                name = col if col not in df.columns else f"detail_{col}"
                df[name] = det[col].values
        df.insert(0, "scorer", self.scorer)
        return df

    def to_dict(self) -> dict:
        return to_jsonable(
            {
                "scorer": self.scorer,
                "values": self.values,
                "items": self.items,
                "aggregate": self.aggregate,
                "details": [dict(d) for d in self.details],
                "groups": self.groups,
                "n_unscored": self.n_unscored,
                "provenance": self.provenance,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ScoreResult":
        """The inverse of :meth:`to_dict` (a NaN value, written as null, reads back as NaN)."""
        prov = dict(d.get("provenance") or {})
        prov["sites"] = tuple(prov.get("sites", ()))
        groups = d.get("groups")
        return cls(
            d["scorer"],
            np.array([np.nan if v is None else v for v in d["values"]], dtype=float),
            tuple(d["items"]),
            Estimate.from_dict(d["aggregate"]),
            tuple(d.get("details") or ()),
            tuple(groups) if groups is not None else None,
            int(d.get("n_unscored", 0)),
            Provenance(**prov),
        )

    def summary(self) -> str:
        """``refusal: 0.20 [0.08, 0.40] (95% wilson, n=20)``, with the unscored count when some items were."""
        extra = f", {self.n_unscored} unscored" if self.n_unscored else ""
        return f"{self.scorer}: {self.aggregate}{extra}"

    def __str__(self) -> str:
        return self.summary()


@runtime_checkable
class Scorer(Protocol):
    """What every scorer is: a callable over a batch of (prompt, output) pairs."""

    name: str

    def __call__(
        self,
        prompts: Sequence[str] | None,
        outputs: Sequence[str],
        *,
        groups: Sequence[Any] | None = None,
        provenance: Provenance | None = None,
    ) -> ScoreResult: ...


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


class UnknownScorerError(UnknownNameError):
    """No scorer is registered under that name (the message suggests close matches)."""


#: The scorer registry (name -> factory); see :class:`workbench.registry.Registry`.
SCORERS: Registry[Callable[..., Any]] = Registry("scorer", error=UnknownScorerError, unknown="no {kind} named {name!r}.",
                                                 n=3, cutoff=0.5)
_REGISTRY = SCORERS  # the old private name


def register_scorer(name: str, *, overwrite: bool = False) -> Callable[[F], F]:
    """Class/function decorator registering a scorer factory under ``name``.

    The factory is called by :func:`get_scorer` with the keyword options and must return a
    scorer. Registering a taken name raises unless ``overwrite=True`` (to catch two modules
    claiming one name).
    """
    register = SCORERS.decorator(name, overwrite=overwrite)  # checks the name now

    def deco(factory: F) -> F:
        register(factory)
        try:
            factory.scorer_name = name  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
        return factory

    return deco


def get_scorer(name: str, **options: Any) -> Any:
    """Build the scorer registered as ``name`` with ``options``.

    Raises :class:`UnknownScorerError` listing close matches and all registered names.
    """
    return SCORERS.get(name)(**options)


def list_scorers() -> list[str]:
    """Names of the registered scorers, sorted."""
    return SCORERS.names()


# --------------------------------------------------------------------------------------------
# Helpers shared by the scorers
# --------------------------------------------------------------------------------------------


def check_batch(prompts: Sequence[str] | None, outputs: Sequence[str]) -> tuple[tuple[Any, ...], list[str]]:
    """Validate a batch; returns (items, outputs). Items are the prompts, or "0", "1"... ."""
    if isinstance(outputs, str):
        raise TypeError("outputs must be a sequence of strings, not a single string.")
    outs = list(outputs)
    for i, o in enumerate(outs):
        if not isinstance(o, str):
            raise TypeError(f"outputs[{i}] is {type(o).__name__}, expected str.")
    if prompts is None:
        return tuple(str(i) for i in range(len(outs))), outs
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not a single string.")
    ps = list(prompts)
    if len(ps) != len(outs):
        raise ValueError(f"got {len(ps)} prompts but {len(outs)} outputs; pass one prompt per output.")
    return tuple(ps), outs


def resolve_groups(prompts: Sequence[Any] | None, groups: Sequence[Any] | None, n: int) -> tuple[Any, ...] | None:
    """The clustering used for an aggregate CI.

    Explicit ``groups`` win. Otherwise, if some prompt occurs more than once, the items are
    clustered by prompt (several generations of one prompt are not independent). Otherwise
    None: every item is its own unit.
    """
    if groups is not None:
        g = tuple(groups)
        if len(g) != n:
            raise ValueError(f"groups must give one id per item; got {len(g)} for {n} items.")
        return g
    if prompts is not None and len(set(prompts)) < len(prompts):
        return tuple(prompts)
    return None


def fill_provenance(
    provenance: Provenance | None, scorer: str, items: Sequence[Any], outputs: Sequence[str], **options: Any
) -> Provenance:
    prov = provenance if provenance is not None else Provenance()
    extra = dict(prov.extra)
    extra.setdefault("scorer", scorer)
    if options:
        extra.setdefault("scorer_options", to_jsonable(options))
    return prov.replace(data_hash=prov.data_hash or data_hash(list(items), list(outputs)), extra=extra)
