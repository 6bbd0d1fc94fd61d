"""``python -m workbench.organisms build|check|list``: see :mod:`workbench.organisms.build`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .build import SHIPPED_DIR, build_adapter, shipped_manifest
    from .recipes import ORGANISMS, get_spec

    ap = argparse.ArgumentParser(prog="python -m workbench.organisms", description="build and check model organisms")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train an organism's adapter")
    b.add_argument("names", nargs="*")
    b.add_argument("--all", action="store_true")
    b.add_argument("--out", help="directory for one organism (adapter.safetensors + training.json)")
    b.add_argument("--ship", action="store_true", help="write into the package's adapters/ and update MANIFEST.json")
    c = sub.add_parser("check", help="rebuild into a temporary directory and compare the sha256 with the shipped one")
    c.add_argument("names", nargs="+")
    sub.add_parser("list", help="the organisms, their ground truth and shipped hashes")
    a = ap.parse_args(argv)
    if a.cmd == "list":
        man = shipped_manifest()
        for n, s in ORGANISMS.items():
            print(f"{s.model_name}\n  planted: {s.behaviour}\n  ground truth: {s.ground_truth}\n  method: {s.method}\n"
                  f"  shipped adapter: {man.get(n, {}).get('sha256', 'none (built on first use)')}")
        return 0
    if a.cmd == "check":
        bad = 0
        man = shipped_manifest()
        for n in a.names:
            with tempfile.TemporaryDirectory() as d:
                rec = build_adapter(n, d)
            want = man.get(get_spec(n).name, {}).get("sha256")
            ok = rec["sha256"] == want
            bad += not ok
            print(f"{n}: rebuilt {rec['sha256']} shipped {want}: {'identical' if ok else 'DIFFERENT'} "
                  f"({rec['seconds']['total']} s)")
        return 1 if bad else 0
    names = list(ORGANISMS) if a.all else [get_spec(n).name for n in a.names]
    if not names:
        ap.error("name organisms or pass --all")
    if a.out and (len(names) != 1 or a.ship):
        ap.error("--out takes one organism and excludes --ship")
    for n in names:
        if a.ship:
            with tempfile.TemporaryDirectory() as d:
                rec = build_adapter(n, d)
                SHIPPED_DIR.mkdir(exist_ok=True)
                (SHIPPED_DIR / f"{n}.safetensors").write_bytes((Path(d) / "adapter.safetensors").read_bytes())
                (SHIPPED_DIR / f"{n}.training.json").write_text((Path(d) / "training.json").read_text())
            f = SHIPPED_DIR / "MANIFEST.json"
            doc = json.loads(f.read_text()) if f.exists() else {"adapters": {}}
            doc["adapters"][n] = {"sha256": rec["sha256"], "bytes": rec["bytes"]}
            doc["adapters"] = dict(sorted(doc["adapters"].items()))
            f.write_text(json.dumps(doc, indent=1) + "\n")
        else:
            out = Path(a.out) if a.out else Path("organisms") / n
            rec = build_adapter(n, out)
        print(json.dumps({k: rec[k] for k in ("model", "sha256", "bytes", "seconds")}), file=sys.stdout, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
