"""The ``workbench`` command line.

    workbench models [--check MODEL]       registered models; whether MODEL is supported (from its config)
    workbench experiments                  built-in experiments, what they do, their presets
    workbench config EXPERIMENT [--preset P]  an experiment's config (default or preset), as documented TOML
    workbench run EXPERIMENT [--preset P] [--model NAME|PATH ...] [--backend tl|nnsight] [--device D] [--dtype T]
                  [--out DIR] [--config FILE] [--set key=value ...] [--seed N] [--resume | --overwrite]
                  [--executor local|ray] [--ray-address ADDR] [--ray-cpus N] [--num-gpus G] [--quiet]
    workbench report RUN_DIR               (re)write RUN_DIR/report.html
    workbench docs RUN_DIR [--readme README.md] [--figures docs/figures]
                                           the README's results block and docs/figures/ from a finished run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "run_experiment"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="interp-workbench: interpretability investigations "
                                "that cross-check internal findings against behaviour.")
    sub = p.add_subparsers(dest="command", required=True)
    mo = sub.add_parser("models", help="list registered models, or check whether a model is supported")
    mo.add_argument("--check", metavar="MODEL", help="a local directory, .gguf file, hub id or registered name: whether the "
                    "workbench supports it, from its config alone (no weights read or downloaded)")
    sub.add_parser("experiments", help="list built-in experiments")
    c = sub.add_parser("config", help="print an experiment's default config as TOML")
    c.add_argument("experiment")
    c.add_argument("--preset", help="the config with this preset applied (see `workbench experiments`)")
    r = sub.add_parser("run", help="run an experiment and write a run directory with a report")
    r.add_argument("experiment")
    r.add_argument("--preset", help="named config overrides, e.g. quick (see `workbench experiments`); applied "
                   "before --config and --set")
    r.add_argument("--model", action="append", help="registered name, local HF directory, .gguf file or hub id; "
                   "repeat it to run several models in one run (model.models; experiments that compare models)")
    r.add_argument("--backend", choices=["tl", "nnsight"])
    r.add_argument("--device", help="cpu, cuda, cuda:1, auto")
    r.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    r.add_argument("--out", help="run directory (default runs/<experiment>)")
    r.add_argument("--config", help="TOML config file")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set probe.layers=[3,6]")
    r.add_argument("--seed", type=int)
    g = r.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue a run, reusing finished steps and shards")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    r.add_argument("--executor", choices=["local", "ray"], default="local")
    r.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    r.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="CPUs of a local Ray started for the run (default: all): at most N tasks or model workers at once")
    r.add_argument("--num-gpus", type=float, default=0.0, metavar="G",
                   help="GPUs Ray reserves per task or model worker (0 on CPU machines)")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    rep = sub.add_parser("report", help="(re)write a run directory's report.html")
    rep.add_argument("run_dir")
    dc = sub.add_parser("docs", help="write the README's results block and docs/figures/ from a finished run")
    dc.add_argument("run_dir")
    dc.add_argument("--readme", default="README.md")
    dc.add_argument("--figures", default="docs/figures")
    return p


def run_experiment(name: str, *, out: str | Path | None = None, config_file: str | None = None,
                   overrides: list[str] | None = None, preset: str | None = None, resume: bool = False,
                   overwrite: bool = False, executor: str = "local", ray_address: str | None = None,
                   progress: bool = True, argv: list[str] | None = None, models: list[str] | None = None,
                   ray_cpus: int | None = None, num_gpus: float = 0.0) -> Path:
    """Run a registered experiment; returns the path of its report. (The CLI's ``run``.)

    The config is the experiment's defaults, then ``preset`` (else the experiment's default preset), the
    TOML ``config_file`` and the ``key=value`` ``overrides``. ``models`` (the CLI's repeated ``--model``) names the
    model(s) last: one sets ``model.name``, several set ``model.models`` (see :func:`model_overrides`).
    ``ray_cpus`` and ``num_gpus`` size the Ray executor (CPUs of a local Ray; GPUs reserved per task or worker).

    A failure before any step finished leaves no run directory behind (when this run created it);
    a later one marks the run ``failed`` and keeps its finished steps for ``resume=True``.
    """
    from .config import model_names
    from .executors import make_executor
    from .registry import get_experiment
    from .run import RunContext

    exp = get_experiment(name)
    preset_name, _ = exp.preset(preset)
    overrides = list(overrides or []) + model_overrides(models, overrides or [])
    cfg = exp.config(config_file, overrides, preset)
    if hasattr(cfg, "model"):
        names = model_names(cfg.model)  # a conflicting or repeated model fails here
        if cfg.model.models:  # one spelling per run: model.name is the (first) model, models only lists several
            cfg.model.name, cfg.model.models = names[0], (names if len(names) > 1 else [])
    sizes = {k: v for k, v in (("num_cpus", ray_cpus), ("num_gpus", num_gpus)) if v}
    ex = make_executor(executor, ray_address, **sizes)
    try:
        ctx = RunContext(out or Path("runs") / name, name, cfg, resume=resume, overwrite=overwrite, executor=ex,
                         progress=progress, argv=argv, preset=preset_name)
        try:
            exp.run(ctx, cfg)
            return ctx.finish()
        except BaseException as e:
            ctx.fail(e)
            raise
    finally:
        ex.close()


def model_overrides(models: list[str] | None, overrides: list[str]) -> list[str]:
    """The ``--set`` overrides that ``--model`` (repeatable) stands for: one model sets ``model.name`` (and clears
    ``model.models``), several set ``model.models`` (and ``model.name`` to the first). Refused together with a
    ``model.name`` or ``model.models`` override (two answers to one question)."""
    from .config import ConfigError

    if not models:
        return []
    clash = [o for o in overrides if o.split("=", 1)[0].strip() in ("model.name", "model.models")]
    if clash:
        raise ConfigError(f"--model and --set {clash[0]} both name the model; use one of them")
    if len(set(models)) < len(models):
        twice = next(m for m in models if models.count(m) > 1)
        raise ConfigError(f"--model {twice!r} is given twice; name each model once")
    if len(models) == 1:
        return [f'model.name="{_toml_str(models[0])}"', "model.models=[]"]
    listed = ", ".join(f'"{_toml_str(m)}"' for m in models)
    return [f'model.name="{_toml_str(models[0])}"', f"model.models=[{listed}]"]


def _toml_str(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


# Errors that are the user's to fix (a bad name, path, value, file, device or cluster address): the CLI
# prints them as one line. Anything else is a bug in the workbench and keeps its traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (KeyError, ValueError, OSError, ImportError)


def _user_error(e: BaseException) -> bool:
    from workbench.errors import WorkbenchError

    return isinstance(e, (WorkbenchError,) + _USER_ERRORS)


def _one_line(e: BaseException) -> str:
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    msg = " ".join(msg.split())
    if isinstance(e, OSError) and not msg:
        msg = type(e).__name__
    return msg or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """The ``workbench`` command. User errors end as one line ``workbench: error: ...`` with exit code 2
    (``WORKBENCH_DEBUG=1`` shows their tracebacks)."""
    import os

    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("workbench: interrupted (finished steps are kept; --resume continues the run)", file=sys.stderr)
        return 130
    except Exception as e:
        if not _user_error(e) or os.environ.get("WORKBENCH_DEBUG"):
            raise
        print(f"workbench: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "models" and args.check:
        from workbench.models.loading import check_support

        r = check_support(args.check)
        print(f"{args.check}: {'supported' if r['supported'] else 'NOT supported'}")
        for key in ("family", "architecture", "source"):
            if r.get(key):
                print(f"  {key}: {r[key]}")
        if r.get("quirks"):
            print(f"  handled quirks: {', '.join(r['quirks'])}")
        for m in r.get("missing", []):
            print(f"  {'missing' if r['supported'] else 'why'}: {m}")
        return 0 if r["supported"] else 1
    if args.command == "models":
        from workbench.models import DEFAULT_MODEL, list_models

        for e in list_models():
            star = "*" if e.name == DEFAULT_MODEL else " "
            print(f"{star} {e.name:<24} {e.description}")
            if e.hub_id:
                print(f"  {'':<24} original release: {e.hub_id}")
        print("\n* default model. Also accepted: a local HF directory, a .gguf file, a hub id 'org/name'.")
        return 0
    if args.command == "experiments":
        from .registry import list_experiments

        for e in list_experiments():
            print(f"{e.name:<24} {e.description}")
            names = [f"{p}{' (default)' if p == e.default_preset else ''}" for p in e.presets]
            print(f"  {'':<24}presets: {', '.join(names)}")
        return 0
    if args.command == "config":
        from .config import to_toml
        from .registry import get_experiment

        exp = get_experiment(args.experiment)
        name, _ = exp.preset(args.preset)
        how = (f"preset {name!r}" + (" (this experiment's default)" if name == exp.default_preset else "")
               if name else "the defaults")
        print(f"# {exp.name}: {how}; presets: {', '.join(exp.presets)}. Override with --preset, --config FILE or "
              "--set section.key=value.")
        print(to_toml(exp.config(preset=args.preset)), end="")
        return 0
    if args.command == "report":
        from .report import write_report

        print(write_report(args.run_dir))
        return 0
    if args.command == "docs":
        from .docs import write_docs

        print(write_docs(args.run_dir, readme=args.readme, figures_dir=args.figures))
        return 0
    overrides = list(args.set)
    for flag, key in (("backend", "model.backend"), ("device", "model.device"), ("dtype", "model.dtype")):
        val = getattr(args, flag)
        if val is not None:
            overrides.append(f'{key}="{val}"')
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    path = run_experiment(args.experiment, out=args.out, config_file=args.config, overrides=overrides,
                          preset=args.preset, resume=args.resume, overwrite=args.overwrite, executor=args.executor,
                          ray_address=args.ray_address, progress=not args.quiet, argv=sys.argv, models=args.model,
                          ray_cpus=args.ray_cpus, num_gpus=args.num_gpus)
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
