"""A self-contained HTML report for a run directory: figures embedded, one section per result.

``write_report(run_dir)`` reads the manifest and every step's sections and writes
``report.html`` with no external assets (figures as base64 PNG data URIs, inline CSS), so it can be
mailed, archived or opened offline. Each section shows its summary, its cross-check verdict
(agree / disagree / inconclusive) with the reason, its key numbers, figures and the head of its
tables (the full tables are in ``results/``).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from workbench.errors import WorkbenchError

__all__ = ["write_report", "render_report", "ReportError"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d2330;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #dde;padding-bottom:.2em}
.meta{color:#556;font-size:.9em} .meta td{padding:1px 10px 1px 0;vertical-align:top}
.verdict{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;font-size:.85em;margin-right:.5em}
.agree{background:#d8f3dc;color:#1b5e20} .disagree{background:#fde2e1;color:#8b1a1a} .inconclusive{background:#fff3cd;color:#7a5b00}
.none{background:#e8eaf0;color:#445}
.recovered,.planted{background:#d8f3dc;color:#1b5e20} .not-recovered,.not-planted{background:#fde2e1;color:#8b1a1a}
table.metrics,table.data{border-collapse:collapse;font-size:.85em;margin:.6em 0}
table.metrics td,table.data td,table.data th{border:1px solid #dde;padding:2px 8px} table.data th{background:#f3f4f8}
img{max-width:100%;border:1px solid #eee;margin:.4em 0} .note{color:#556;font-size:.85em}
.toc a{text-decoration:none} details{margin:.4em 0}
"""


_GROUND_TRUTH_VERDICTS = ("recovered", "not recovered", "planted", "not planted")


def _cls(verdict: str) -> str:
    """CSS class of a verdict ("not recovered" -> "not-recovered")."""
    return "-".join(str(verdict).split())


def _img(path: Path) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError as e:
        raise ReportError(f"cannot read figure {path} ({e}); re-run with --resume to recompute its step") from e
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table_head(path: Path, n: int = 12) -> str:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except OSError as e:
        raise ReportError(f"cannot read table {path} ({e}); re-run with --resume to recompute its step") from e
    except pd.errors.ParserError as e:
        raise ReportError(f"table {path} is damaged ({e}); re-run with --resume to recompute its step") from e
    except pd.errors.EmptyDataError:
        return f"<p class='note'>{html.escape(path.name)}: empty table</p>"
    more = f"<p class='note'>{len(df)} rows; showing {min(n, len(df))}. Full table: results/…__{html.escape(path.name)}</p>"
    return df.head(n).to_html(index=False, classes="data", border=0, float_format=lambda x: f"{x:.4g}") + more


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and {"value", "ci_low", "ci_high"} <= set(v):
        return f"{v['value']:.4g} [{v['ci_low']:.4g}, {v['ci_high']:.4g}]"
    return html.escape(str(v))


class ReportError(WorkbenchError, ValueError):
    """A run directory's files cannot be made into a report."""


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReportError(
            f"cannot read {path} ({type(e).__name__}: {e}); the run directory is damaged: re-run the experiment "
            "with --resume (a damaged step is recomputed) and the report is written again"
        ) from e


def _inside(root: Path, rel: object, what: str) -> Path:
    """``root / rel``, refused unless it resolves inside ``root`` (a report embeds only its own run's files)."""
    if not isinstance(rel, str) or not rel:
        raise ReportError(f"{what} {rel!r} in {root} is not a file name")
    p = (root / rel).resolve()
    base = root.resolve()
    if p != base and base not in p.parents:
        raise ReportError(f"{what} {rel!r} points outside its run directory ({p} is not under {base}); refusing to "
                          "read it into the report. The run directory was edited by hand or is not a workbench run.")
    return p


def render_report(run_dir: str | Path) -> str:
    from .writer import _slug

    run = Path(run_dir)
    manifest = _read_json(run / "manifest.json")
    if not isinstance(manifest, dict):
        raise ReportError(f"{run / 'manifest.json'} is not a JSON object")
    sections = []
    for step in manifest.get("steps", []):
        try:
            d = _inside(run, f"steps/{_slug(str(step))}", "step")
        except ValueError as e:
            raise ReportError(f"step name {step!r} in {run / 'manifest.json'} is not a step of this run ({e})") from e
        if not (d / "_sections.json").exists():
            continue
        found = _read_json(d / "_sections.json")
        if not isinstance(found, list):
            raise ReportError(f"{d / '_sections.json'} is not a list of sections")
        for s in found:
            sections.append((step, d, s))
    model = manifest.get("model") or {}
    title = html.escape(str(manifest.get("experiment", run.name)))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title} — "
             f"interp-workbench report</title><style>{_CSS}</style></head><body>", f"<h1>{title}</h1>"]
    rows = [("model", f"{model.get('name', '?')} (weights {model.get('weights_hash', '?')}, backend {model.get('backend', '?')})"),
            ("status", manifest.get("status")), ("seed", manifest.get("seed")),
            ("started / finished", f"{manifest.get('started')} / {manifest.get('finished', '—')}"),
            ("git", manifest.get("git_sha")),
            ("packages", ", ".join(f"{k} {v}" for k, v in manifest.get("packages", {}).items())),
            ("data", ", ".join(f"{k}={v}" for k, v in manifest.get("data_hashes", {}).items()) or "—"),
            ("step times (s)", ", ".join(f"{k}: {v}" for k, v in manifest.get("timings", {}).items()))]
    if model.get("notes"):
        rows.append(("model notes", model["notes"]))
    parts.append("<table class='meta'>" + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                                                  for k, v in rows) + "</table>")
    if sections:
        parts.append("<h2>Contents</h2><ol class='toc'>")
        for i, (_, _, s) in enumerate(sections):
            v = s.get("verdict")
            badge = f" <span class='verdict {_cls(v)}'>{v}</span>" if v else ""
            parts.append(f"<li><a href='#s{i}'>{html.escape(s['title'])}</a>{badge}</li>")
        parts.append("</ol>")
    for i, (step, d, s) in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(s['title'])}</h2>")
        v = s.get("verdict")
        if v:
            kind = "ground truth" if v in _GROUND_TRUTH_VERDICTS else "cross-check"
            parts.append(f"<p><span class='verdict {_cls(v)}'>{kind}: {v}</span>"
                         f"{html.escape(s.get('verdict_detail', ''))}</p>")
        if s.get("summary"):
            parts.append("".join(f"<p>{html.escape(p)}</p>" for p in s["summary"].split("\n\n")))
        if s.get("metrics"):
            parts.append("<table class='metrics'>" + "".join(
                f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(val)}</td></tr>" for k, val in s["metrics"].items()) + "</table>")
        for f in s.get("figures", []):
            parts.append(_img(_inside(d, f, "figure")))
        for t in s.get("tables", []):
            parts.append(f"<details><summary>table {html.escape(t)}</summary>{_table_head(_inside(d, t, 'table'))}</details>")
        for n in s.get("notes", []):
            parts.append(f"<p class='note'>{html.escape(n)}</p>")
    parts.append("<p class='note'>Generated by interp-workbench. Every statistic carries its interval and the "
                 "manifest records seeds, model weights hash and data hashes.</p></body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path) -> Path:
    from workbench.store import atomic_write_text

    run = Path(run_dir)
    if not (run / "manifest.json").exists():
        raise ReportError(f"{run} is not a run directory (no manifest.json); give the --out directory of a run")
    out = run / "report.html"
    atomic_write_text(out, render_report(run))
    return out
