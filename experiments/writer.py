"""Where a step writes: :class:`StepWriter` (tables, figures, JSON, report sections, typed results and
studies by the result contract) and :class:`Section` (one result in the report).

A step's writer works inside the step's temporary directory; :class:`experiments.run.RunContext` moves
the directory into place when the step finishes, so a step is either entirely there or not at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

from workbench.results import to_jsonable
from workbench.store import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["StepWriter", "Section"]


@dataclasses.dataclass
class Section:
    """One result in the report: what was measured, the numbers, the verdict, tables and figures."""

    title: str
    summary: str = ""
    verdict: str | None = None        # "agree" | "disagree" | "inconclusive" | None
    verdict_detail: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    tables: list[str] = dataclasses.field(default_factory=list)   # file names within the step
    figures: list[str] = dataclasses.field(default_factory=list)  # file names (PNG) within the step
    notes: list[str] = dataclasses.field(default_factory=list)
    order: int = 0


def _slug(name: str) -> str:
    s = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-.")
    if not s:
        raise ValueError(f"cannot make a file name from {name!r}")
    return s


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class StepWriter:
    """Where a step writes its tables, figures and report section (inside its temporary directory)."""

    def __init__(self, directory: Path, step: str, *, title_suffix: str = ""):
        self.dir = directory
        self.step = step
        #: appended to every section's title (the model, in a run over several models)
        self.title_suffix = title_suffix
        self.sections: list[Section] = []

    def table(self, name: str, df: Any) -> str:
        """Write a DataFrame as CSV and Parquet; returns the CSV file name."""
        import io

        base = _slug(name)
        atomic_write_text(self.dir / f"{base}.csv", df.to_csv(index=False))
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(self.dir / f"{base}.parquet", buf.getvalue())
        return f"{base}.csv"

    def figure(self, name: str, fig: Any) -> str:
        """Save a matplotlib Figure as PNG (embedded in the report) and PDF; returns the PNG name."""
        import io

        base = _slug(name)
        for ext in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=110, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
            atomic_write_bytes(self.dir / f"{base}.{ext}", buf.getvalue())
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except Exception:  # pragma: no cover
            pass
        return f"{base}.png"

    def result(self, name: str, result: Any, *, table: bool = True,
               plots: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
        """Write a typed result by the result contract: ``to_dataframe()`` as the table ``name``, and each plot
        registered for its type (:func:`workbench.results.plots_for`; only those in ``plots`` when given) as a
        figure: plot ``"plot"`` as ``name``, any other as ``name_<plot>``. Returns (table files, figure files)."""
        from workbench.results import plots_for

        tables = [self.table(name, result.to_dataframe())] if table else []
        registered = plots_for(result)
        if plots is not None:
            unknown = [p for p in plots if p not in registered]
            if unknown:
                raise ValueError(f"{type(result).__name__} has no plot {unknown[0]!r}; registered: {list(registered)}")
            registered = {p: registered[p] for p in plots}
        figures = [self.figure(name if p == "plot" else f"{name}_{p}", fn(result)) for p, fn in registered.items()]
        return tables, figures

    def study(self, res: Any) -> dict:
        """Write a :class:`experiments.study.StudyResult`: its results (by the contract), its extra tables, its
        cross-check (scatter, per-unit table, JSON) and one report section; returns its payload."""
        tables: list[str] = []
        figures: list[str] = []
        for name, r in res.results.items():
            t, f = self.result(name, r, table=name not in res.tables_off, plots=res.plots.get(name))
            tables += t
            figures += f
        for name, df in res.tables.items():
            tables.append(self.table(name, df))
        cc = res.crosscheck
        if cc is not None:
            return {**res.payload, **self.crosscheck(res.slug, cc, res.title, res.description, metrics=res.metrics,
                                                     figures=figures, tables=tables, notes=res.notes,
                                                     verdict=res.verdict)}
        self.section(Section(res.title, res.description, verdict=res.verdict, metrics=dict(res.metrics),
                             figures=figures, tables=tables, notes=list(res.notes)))
        return dict(res.payload)

    def crosscheck(self, slug: str, cc: Any, title: str, description: str, *, metrics: dict | None = None,
                   figures: Sequence[str] = (), tables: Sequence[str] = (), notes: Sequence[str] = (),
                   verdict: str | None = None) -> dict:
        """Write a :class:`workbench.crosscheck.CrossCheck` (its per-unit table, scatter plot and JSON as
        ``<slug>_crosscheck.*``) and one report section around it, after the step's own ``figures`` and
        ``tables``; returns ``{"verdict", "correlation"}`` for the step's payload. :meth:`study` writes a
        study's cross-check through this; experiments that assemble their sections by hand call it directly."""
        t, f = self.result(f"{slug}_crosscheck", cc)
        self.json(f"{slug}_crosscheck", cc.to_dict())
        metrics = {"cross-check " + cc.method_label: cc.correlation.to_dict() if cc.correlation else None,
                   **(metrics or {})}
        self.section(Section(title, description, verdict=verdict if verdict is not None else cc.verdict,
                             verdict_detail=" " + cc.summary(), metrics=metrics, figures=[*figures, *f],
                             tables=[*tables, *t], notes=[*notes, *cc.notes]))
        return {"verdict": cc.verdict, "correlation": cc.correlation.value if cc.correlation else None}

    def section(self, section: Section) -> None:
        if self.title_suffix and not section.title.endswith(self.title_suffix):
            section.title += self.title_suffix
        section.order = len(self.sections)
        self.sections.append(section)

    def json(self, name: str, obj: Any) -> str:
        base = _slug(name)
        atomic_write_json(self.dir / f"{base}.json", obj)
        return f"{base}.json"

    def _write_sections(self) -> None:
        atomic_write_json(self.dir / "_sections.json", [dataclasses.asdict(s) for s in self.sections])

    def _finish(self, payload: Any, deps: dict, *, sections: bool = True) -> None:
        if sections:
            self._write_sections()
        files = {f.name: _file_sha(f) for f in sorted(self.dir.iterdir()) if f.is_file() and f.name != "_done.json"}
        atomic_write_json(self.dir / "_done.json",
                          {"step": self.step, "payload": to_jsonable(payload), "deps": deps, "files": files})
