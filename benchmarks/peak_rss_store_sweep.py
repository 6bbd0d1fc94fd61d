"""Peak memory of a 30-layer sweep streamed from a disk-backed ActivationStore, at two sizes.

For each size N, one subprocess writes a store of N synthetic examples x 30 layers x 576
(float16, 1024 rows per shard; written from memory-mapped arrays, never whole in memory), and
a *separate* subprocess runs ``probe.layer_sweep(store, ...)`` (probe + 5 label-shuffle
controls + mean difference + 20 random directions, C fixed) and reports its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and its RSS just before the sweep (after
imports and opening the store), so the sweep's own working set is the difference.

Features stream shard by shard into one reused buffer, so the working set is a shard (30 x 1024
x 576 float32 = 68 MiB) plus per-example numbers: the trainer's logits (two float32 per row,
layer and problem), the decision values of the test rows, labels and metadata; about 2 KiB
per example here, against 68 KiB per example of float32 features.
Run: ``python benchmarks/peak_rss_store_sweep.py [N1 N2]`` (default 5000 20000).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
L, D = 30, 576

WRITE = r"""
import sys, numpy as np
sys.path.insert(0, {root!r})
from workbench.store import write_activation_store
n, out = {n}, {out!r}
rng = np.random.default_rng(0)
y = rng.integers(0, 2, n)
u = rng.normal(size={d}); u /= np.linalg.norm(u)
arrays = {{}}
for l in range({L}):
    mm = np.lib.format.open_memmap(f"{{out}}_l{{l}}.npy", mode="w+", dtype=np.float16, shape=(n, {d}))
    for a in range(0, n, 2048):
        b = min(n, a + 2048)
        mm[a:b] = rng.normal(size=(b - a, {d})) + y[a:b, None] * (l / {L}) * u
    mm.flush()
    arrays[f"resid_post.{{l}}"] = mm
write_activation_store(out, arrays, rows_per_shard=1024, row_meta=[{{"label": int(v)}} for v in y])
"""

SWEEP = r"""
import sys, time, json, resource, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(2)
from workbench.store import ActivationStore
from probe.sweep import layer_sweep

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

store = ActivationStore({out!r})
before = rss_mb()
t = time.time()
r = layer_sweep(store, C=1.0, seed=0, max_iter=100)
print(json.dumps({{"n": {n}, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": before, "seconds": time.time() - t, "streamed": r.settings["streamed"],
                  "n_test": r.settings["n_test"], "iterations": r.settings["solver_iterations"],
                  "auroc_last": r.values()[-1], "auroc_first": r.values()[0],
                  "shuffle_at_chance": r.controls_at_chance()["label_shuffle"]}}))
"""


def run(n: int, tmp: Path) -> dict:
    out = str(tmp / f"store_{n}")
    subprocess.run([sys.executable, "-c", WRITE.format(root=str(ROOT), n=n, out=out, d=D, L=L)], check=True)
    for p in tmp.glob(f"store_{n}_l*.npy"):
        p.unlink()
    res = subprocess.run([sys.executable, "-c", SWEEP.format(root=str(ROOT), n=n, out=out)], check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [5000, 20000]
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for n in sizes:
            rows.append(run(n, Path(d)))
            for p in Path(d).glob(f"store_{n}*"):
                subprocess.run(["rm", "-rf", str(p)], check=True)
    feat_mb = {r["n"]: r["n"] * L * D * 4 / 2**20 for r in rows}
    print(f"{'examples':>9} {'features f32 (MB)':>18} {'RSS before (MB)':>16} {'peak RSS (MB)':>14} "
          f"{'sweep working set (MB)':>23} {'seconds':>8} {'iters':>6} {'AUROC L0':>9} {'AUROC L29':>10} {'shuffle@chance':>15}")
    for r in rows:
        print(f"{r['n']:>9} {feat_mb[r['n']]:>18.0f} {r['rss_before_mb']:>16.0f} {r['peak_rss_mb']:>14.0f} "
              f"{r['peak_rss_mb'] - r['rss_before_mb']:>23.0f} {r['seconds']:>8.1f} {r['iterations']:>6} "
              f"{r['auroc_first']:>9.3f} {r['auroc_last']:>10.3f} {str(r['shuffle_at_chance']):>15}")
    a, b = rows[0], rows[-1]
    g = b["peak_rss_mb"] - a["peak_rss_mb"]
    dn = b["n"] - a["n"]
    print(f"peak RSS grew {g:.0f} MB for {dn} more examples ({g * 2**20 / dn / 1024:.1f} KiB per example); "
          f"the float32 features grew {feat_mb[b['n']] - feat_mb[a['n']]:.0f} MB "
          f"({L * D * 4 / 1024:.1f} KiB per example)")
    print(f"peak_rss_mb={a['peak_rss_mb']:.0f},{b['peak_rss_mb']:.0f} growth_mb={g:.0f}")


if __name__ == "__main__":
    main()
