"""Declarative investigations that run methods AND behavioural scorers on the same prompts and
cross-check them; run directories, resumable batch jobs, executors, reports; the ``workbench`` CLI.

Importing this package loads no model and registers nothing until the registry is read.
"""

from .cli import run_experiment
from .config import ConfigError, ModelSection, load_config, to_toml
from .registry import Experiment, experiment, get_experiment, list_experiments
from .run import RunContext, Section
from .study import StudyResult
from .writer import StepWriter

__all__ = ["run_experiment", "ConfigError", "ModelSection", "load_config", "to_toml", "Experiment", "experiment",
           "get_experiment", "list_experiments", "RunContext", "Section", "StepWriter", "StudyResult"]
