"""`workbench docs`: the README's results block and docs/figures/ are rewritten from a run directory's own files."""

import json

import pytest

from experiments.cli import main
from experiments.docs import END, START, DocsError, write_docs


def _run(tmp_path, status="complete"):
    run = tmp_path / "run"
    step = run / "steps" / "logit-lens"
    step.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "status": status, "experiment": "cross-check", "steps": ["logit-lens"], "seed": 3, "git_sha": "abc",
        "finished": "2026-12-04T10:00:00", "model": {"name": "m", "weights_hash": "f" * 64, "backend": "tl"},
        "timings": {"total_this_session": 90.0}, "platform": {"cpus": 2}}))
    (step / "_sections.json").write_text(json.dumps([
        {"title": "Logit lens", "verdict": "agree", "figures": ["lens.png", "lens_crosscheck.png"]},
        {"title": "No cross-check here", "verdict": None, "figures": ["other.png"]}]))
    (step / "lens_crosscheck.json").write_text(json.dumps({
        "method": "spearman", "internal_name": "resolution depth", "behavioural_name": "log p(answer)", "n": 24,
        "unit_name": "prompt", "correlation": {"value": -0.634, "ci_low": -0.81, "ci_high": -0.33, "p_value": 0.0004}}))
    for f in ("lens.png", "lens_crosscheck.png", "other.png"):
        (step / f).write_bytes(b"\x89PNG" + f.encode())
    return run


def test_docs_block_and_figures_come_from_the_run(tmp_path):
    run = _run(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nprose before\n\n{START}\nold table\n{END}\n\nprose after\n")
    figs = tmp_path / "docs" / "figures"
    figs.mkdir(parents=True)
    (figs / "stale.png").write_bytes(b"old")
    assert main(["docs", str(run), "--readme", str(readme), "--figures", str(figs)]) == 0
    text = readme.read_text()
    assert "old table" not in text and "prose before" in text and "prose after" in text
    row = [line for line in text.splitlines() if line.startswith("| Logit lens")]
    assert row == ["| Logit lens | resolution depth | log p(answer) | 24 prompts | rho = -0.63 [-0.81, -0.33], "
                   "p = 0.0004 | **agree** |"]
    assert "No cross-check here" not in text
    assert "model `m` (weights ffffffffffff, tl backend)" in text and "in 1.5 min on 2 CPU cores, seed 3" in text
    assert sorted(p.name for p in figs.iterdir()) == ["logit-lens__lens.png", "logit-lens__lens_crosscheck.png"]
    assert (figs / "logit-lens__lens.png").read_bytes() == b"\x89PNGlens.png"
    assert "](docs/figures/logit-lens__lens_crosscheck.png)" in text
    # idempotent: a second write gives the same file
    before = readme.read_text()
    write_docs(run, readme=readme, figures_dir=figs)
    assert readme.read_text() == before


def test_docs_refuses_unfinished_runs_and_readmes_without_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    with pytest.raises(DocsError, match="not a finished run"):
        write_docs(_run(tmp_path, status="running"), readme=readme, figures_dir=tmp_path / "f")
    readme.write_text("no markers\n")
    with pytest.raises(DocsError, match="no generated block"):
        write_docs(_run(tmp_path / "b"), readme=readme, figures_dir=tmp_path / "f")
