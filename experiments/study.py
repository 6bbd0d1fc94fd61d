"""What a study returns: its typed results, its cross-check, and the text of its report section.

A study (``experiments/studies/<study>.py``) computes; the run writes. The study's ``compute``
function returns a :class:`StudyResult`; :meth:`experiments.run.RunContext.study` runs it as one
resumable step and writes it through :meth:`experiments.writer.StepWriter.study`:

- every typed result in ``results`` by the result contract (``workbench/AGENTS.md``): its
  ``to_dataframe()`` as a table and each plot registered for its type as a figure;
- every extra table in ``tables`` (per-unit tables the study assembled itself);
- the cross-check: its scatter plot, its per-unit table and its JSON;
- one report section: ``title``, ``description``, the verdict with the cross-check's
  ``summary()``, ``metrics`` and ``notes``.

So a study never imports a plot module or touches the writer, and any result type a study
returns is written the same way in every experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["StudyResult", "skipped", "chat_note", "fits_context", "estimate_dict"]


@dataclass
class StudyResult:
    """The outcome of one study (one report section).

    Attributes:
        title: the section title.
        description: what was measured and what is expected (the section's text).
        slug: stem of the cross-check's files (``<slug>_crosscheck.png/.csv/.json``).
        crosscheck: the internal-vs-behaviour :class:`workbench.crosscheck.CrossCheck`, or None
            (a study that makes no claim, or one skipped for this model: ``notes`` says why).
        results: ``{name: typed result}``, written in order: table ``<name>.csv`` from
            ``to_dataframe()``, figures from the plots registered for its type.
        plots: ``{name: plot names}`` to write only some of a result's registered plots
            (``()`` for none; default all); ``tables_off``: names whose table is not written.
        tables: ``{name: DataFrame}``, extra tables the study assembled (per-unit rows).
        metrics: headline numbers for the section (``Estimate.to_dict()`` for anything with a CI).
        notes: caveats: dropped items, skipped parts, plain prompts for a model without a chat template.
        payload: JSON-able numbers for later steps and for tests (stored with the step; the
            verdict and correlation are added by the writer).
    """

    title: str
    description: str
    slug: str
    crosscheck: Any = None
    results: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, Sequence[str]] = field(default_factory=dict)
    tables_off: Sequence[str] = ()
    tables: dict[str, Any] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    payload: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str | None:
        return self.crosscheck.verdict if self.crosscheck is not None else None

    @property
    def provenance(self) -> Any:
        """The cross-check's provenance (model, weights hash, data hash, seed), or None."""
        return getattr(self.crosscheck, "provenance", None)

    def to_dataframe(self) -> Any:
        """The cross-check's per-unit table (empty when there is none)."""
        import pandas as pd

        return self.crosscheck.to_dataframe() if self.crosscheck is not None else pd.DataFrame()

    def summary(self) -> str:
        """The title and the verdict in one line (or why there is none)."""
        if self.crosscheck is not None:
            return f"{self.title}: {self.crosscheck.summary()}"
        why = self.payload.get("skipped") or (self.notes[0] if self.notes else "")
        return f"{self.title}: no cross-check" + (f" ({why})" if why else "")


def skipped(title: str, slug: str, reason: str, *, notes: Sequence[str] = ()) -> StudyResult:
    """A study that cannot run on this model (say, no answer is one token for its tokenizer): a section that
    says why, and no verdict."""
    return StudyResult(title, f"Skipped: {reason}.", slug, notes=list(notes), payload={"skipped": reason})


def chat_note(model: Model) -> list[str]:
    """The note a study adds when it formats prompts without a chat template (the model has none)."""
    if getattr(model.facts, "has_chat_template", False):
        return []
    return [f"{model.name} has no chat template: prompts were given as plain text (no system or user turn)"]


def fits_context(model: Model, prompts: Sequence[Any], *, chat: bool = False, system: str | None = None,
                 reserve: int = 0, continuations: Sequence[str | None] | None = None) -> list[bool]:
    """Per prompt, whether it fits ``model``'s context with ``reserve`` tokens to spare (tokens to be generated
    or appended) plus its continuation's tokens (``continuations``: an output read after the prompt), tokenised
    as the model's ``tokenize`` does (chat template, BOS). A study drops the prompts that do not, with a note,
    instead of failing on a small-context model."""
    from workbench.models import ContextLengthError

    n_ctx = model.facts.n_ctx
    conts = list(continuations) if continuations is not None else [None] * len(prompts)
    out = []
    for p, c in zip(prompts, conts):
        try:
            n = len(model.tokenize(p, chat=chat, **({"system": system} if chat and system else {})).real_tokens(0))
        except ContextLengthError:
            out.append(False)
            continue
        extra = len(model.tokenizer(c, add_special_tokens=False)["input_ids"]) if c else 0
        out.append(n + extra + reserve <= n_ctx)
    return out


def estimate_dict(e: Any) -> dict | None:
    """An :class:`~workbench.stats.Estimate` as JSON-able metrics (``to_dict()``), or None for a missing one."""
    return None if e is None else e.to_dict()
