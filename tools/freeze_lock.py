"""Print a pip constraints file pinning every installed distribution (run in a fresh environment).

``make lock`` installs the package with the newest versions its ranges allow into a throwaway virtual
environment and runs this there; the result is ``requirements/lock.txt``, which ``make env`` (and so
``make demo`` / ``make test`` / CI) installs with ``pip install -c``. The package itself and editable
installs are left out (a constraints file cannot name them).
"""

from __future__ import annotations

import platform
import sys
import time
from importlib.metadata import distributions

SKIP = {"interp-workbench", "pip", "setuptools", "wheel"}


def main() -> None:
    rows = {}
    for d in distributions():
        name = (d.metadata["Name"] or "").strip()
        if not name or name.lower() in SKIP:
            continue
        version = d.version.split("+")[0] if name.lower() == "torch" else d.version  # +cpu/+cu128 builds alike
        rows[name.lower()] = f"{name}=={version}"
    print("# Exact versions the workbench is tested with (pip constraints; `make env` installs with -c).")
    print("# Regenerate: `make lock` (newest versions the ranges in pyproject.toml allow), then `make test` and")
    print("# `make test-latest` before committing it.")
    print(f"# Generated {time.strftime('%Y-%m-%d')} on Python {platform.python_version()} ({sys.platform}, "
          f"{platform.machine()}).")
    for k in sorted(rows):
        print(rows[k])


if __name__ == "__main__":
    main()
