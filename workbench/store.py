"""Run directories, atomic writes, resumable shards, and the disk-backed activation store.

Batch jobs lose no finished work: every file is written to a temporary name in the same
directory, flushed, fsynced and renamed into place (``os.replace`` is atomic on POSIX), so a
reader sees either the old file or the complete new one, never a partial one. Work split into
shards records each finished shard as its own file; ``resume=True`` skips shards whose files
exist (and whose job fingerprint matches), so a killed job restarts where it stopped.

:class:`ActivationStore` collects activations for many prompts at many sites in length-bucketed,
padding-aware batches and streams them to safetensors shards in the requested dtype; peak
memory depends on the batch, not on the number of prompts. Reads are lazy: one (site, layer)
tensor is read from each shard without touching the others.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_tensors", "ShardSet",
    "ActivationStore", "collect_activations", "write_activation_store", "StoreMismatchError", "ShardCorruptError",
    "length_buckets", "partial_path", "clean_stale_partials",
]


class StoreMismatchError(WorkbenchError, ValueError):
    """A resume was asked for, but the directory holds a different job."""


# ----------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere reading the umask means setting it; restored at once
    os.umask(old)
    return old


def _file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` gives a new file (``mkstemp`` gives 0600)."""
    return 0o666 & ~_umask()


def _atomic(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic(Path(path), lambda f: f.write(data), "wb")


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic(Path(path), lambda f: f.write(text), "w")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    from .results import to_jsonable

    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def atomic_save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically (never pickle)."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def partial_path(target: str | Path) -> Path:
    """A sibling ``.<name>.partial-<pid>`` of ``target``: where a directory is built before it is renamed into
    place (:func:`clean_stale_partials` removes those a dead process left)."""
    target = Path(target)
    return target.with_name(f".{target.name}.partial-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clean_stale_partials(parent: str | Path) -> list[Path]:
    """Remove ``*.partial-<pid>`` entries in ``parent`` whose process is gone (an interrupted build).

    Entries of a live process (another run building the same thing now) are left alone. Returns
    what was removed."""
    import re
    import shutil

    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        m = re.search(r"\.partial-(\d+)$", p.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# ----------------------------------------------------------------------------- shards
class ShardCorruptError(WorkbenchError, ValueError):
    """A shard or a shard directory's job file cannot be read."""


class ShardSet:
    """A directory of shards belonging to one job, identified by a fingerprint.

    ``fingerprint`` is any JSON-able description of the job (model hash, data hash, settings).
    Opening a directory that holds another job's shards raises :class:`StoreMismatchError` with
    ``resume=True`` and clears it with ``resume=False``. A job file that cannot be read (a killed
    writer on a filesystem without atomic renames, a hand edit) clears the shards, which are then
    recomputed; so does a corrupt shard, one at a time: :meth:`done` is true only for a shard that
    reads back, and a shard that does not is deleted (``on_corrupt`` is told which, and why).
    """

    def __init__(self, directory: str | Path, fingerprint: Any, *, resume: bool = True, suffix: str = ".json",
                 on_corrupt: Callable[[str], None] | None = None):
        from .results import data_hash

        self.dir = Path(directory)
        self.suffix = suffix
        self.fingerprint = data_hash(fingerprint)
        self.on_corrupt = on_corrupt or (lambda msg: None)
        self.dir.mkdir(parents=True, exist_ok=True)
        fp_file = self.dir / "_job.json"
        if fp_file.exists():
            try:
                old = json.loads(fp_file.read_text()).get("fingerprint")
            except (OSError, ValueError, AttributeError) as e:
                self.on_corrupt(f"{fp_file} is unreadable ({e}); its shards are discarded and recomputed")
                old = None
                self.clear()
            if old is not None and old != self.fingerprint:
                if resume:
                    raise StoreMismatchError(
                        f"{self.dir} holds shards of a different job (fingerprint {old} != {self.fingerprint}); "
                        "use another directory, or resume=False to start over"
                    )
                self.clear()
            elif not resume:
                self.clear()
        atomic_write_json(fp_file, {"fingerprint": self.fingerprint, "job": fingerprint})

    def clear(self) -> None:
        for p in self.dir.glob(f"shard-*{self.suffix}"):
            p.unlink()

    def path(self, key: str | int) -> Path:
        name = f"{key:06d}" if isinstance(key, int) else str(key)
        return self.dir / f"shard-{name}{self.suffix}"

    def _readable(self, p: Path) -> str | None:
        """Why ``p`` cannot be read back, or None."""
        try:
            if self.suffix == ".json":
                json.loads(p.read_text())
            elif self.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(p), framework="pt") as f:
                    f.keys()
        except Exception as e:  # noqa: BLE001 - any failure to read back means the shard is lost
            return f"{type(e).__name__}: {str(e)[:200]}"
        return None

    def done(self, key: str | int) -> bool:
        """Whether the shard exists and reads back (a corrupt shard is deleted, to be recomputed)."""
        p = self.path(key)
        if not p.exists():
            return False
        why = self._readable(p)
        if why is not None:
            self.on_corrupt(f"shard {p} is corrupt ({why}); deleted, it will be recomputed")
            p.unlink(missing_ok=True)
            return False
        return True

    def finished(self) -> list[str]:
        return sorted(p.name[len("shard-"):-len(self.suffix)] for p in self.dir.glob(f"shard-*{self.suffix}"))

    def write_json(self, key: str | int, obj: Any) -> None:
        atomic_write_json(self.path(key), obj)

    def read_json(self, key: str | int) -> Any:
        p = self.path(key)
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ShardCorruptError(
                f"shard {p} cannot be read ({type(e).__name__}: {e}); delete it and resume to recompute it"
            ) from e


# ----------------------------------------------------------------------------- activation store
def length_buckets(lengths: Sequence[int], *, batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Group indices into batches of similar length (longest first, stable), bounded by
    ``batch_size`` rows and ``max_tokens`` padded tokens per batch. Deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or (max_tokens and width * (len(cur) + 1) > max_tokens)):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


class ActivationStore:
    """Activations on disk, written by :func:`collect_activations`; read lazily.

    Layout::

        <dir>/index.json                 sites, positions, dtype, model and data hashes, shards
        <dir>/shards/shard-000000.safetensors   one tensor per site, plus prompt_index (and
                                         token offsets when positions="all")
        <dir>/prompts.jsonl              per-prompt metadata (index, n_tokens, any row_meta)

    With ``positions="last"`` each prompt contributes one row per site (``[n_prompts, ...]``);
    with ``positions="all"`` every real token contributes a row, and :meth:`token_spans` tells
    which rows belong to which prompt.
    """

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        idx_file = self.dir / "index.json"
        if not idx_file.exists():
            if (self.dir / "shards" / "_job.json").exists():
                raise FileNotFoundError(
                    f"the store in {self.dir} is incomplete (an interrupted collection: shards but no index); "
                    "re-run collect_activations with the same arguments and resume=True to finish it"
                )
            raise FileNotFoundError(f"{self.dir} is not an activation store (no index.json); build one with collect_activations")
        try:
            self.index = json.loads(idx_file.read_text())
        except (OSError, ValueError) as e:
            raise ShardCorruptError(
                f"{idx_file} cannot be read ({type(e).__name__}: {e}); the store is damaged: delete {self.dir} and "
                "collect the activations again"
            ) from e

    @property
    def sites(self) -> list[str]:
        return list(self.index["sites"])

    @property
    def n_prompts(self) -> int:
        return int(self.index["n_prompts"])

    @property
    def positions(self) -> str:
        return self.index["positions"]

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.dir)!r}, {self.n_prompts} prompts, positions={self.positions!r}, "
                f"{len(self.sites)} sites, dtype={self.index['dtype']})")

    def _shard_files(self) -> list[Path]:
        return [self.dir / "shards" / s["file"] for s in self.index["shards"]]

    def _check_site(self, site: Any) -> str:
        from .sites import parse_site

        name = parse_site(site).name
        if name not in self.index["sites"]:
            from .errors import did_you_mean

            hint = did_you_mean(name, self.index["sites"], n=3, cutoff=0.6, inline=True)
            raise KeyError(f"site {name} is not in this store" + (f"; {hint}" if hint else "") +
                           f" (stored: {len(self.sites)} sites)")
        return name

    def iter_shards(self, site: Any, *, shuffle_seed: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Yield ``(prompt_index, activations)`` shard by shard, reading only ``site``."""
        import numpy as np
        from safetensors import safe_open

        name = self._check_site(site)
        files = self._shard_files()
        order = list(range(len(files)))
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed).shuffle(order)
        for i in order:
            with safe_open(str(files[i]), framework="pt") as f:
                yield f.get_tensor("prompt_index"), f.get_tensor(name)

    def iter_shards_sites(self, sites: Sequence[Any], *, shuffle_seed: int | None = None
                          ) -> Iterator[tuple[Any, list[Any]]]:
        """Yield ``(prompt_index, [activations of each site])`` shard by shard, opening each shard
        once. The tensors may be views of the memory-mapped shard, valid until the next shard is
        requested: copy what you keep. (Zipping :meth:`iter_shards` over many sites maps every
        shard once per site, and the mapped pages count towards the reader's resident memory.)"""
        import numpy as np
        from safetensors import safe_open

        names = [self._check_site(s) for s in sites]
        files = self._shard_files()
        order = list(range(len(files)))
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed).shuffle(order)
        for i in order:
            with safe_open(str(files[i]), framework="pt") as f:
                yield f.get_tensor("prompt_index"), [f.get_tensor(n) for n in names]

    def load(self, site: Any, dtype: Any = None) -> Any:
        """All rows of one site in prompt order (``[n_prompts, ...]`` for positions='last'; for
        positions='all', rows of prompt 0's tokens, then prompt 1's...)."""
        import torch

        parts, idxs = [], []
        for pidx, x in self.iter_shards(site):
            parts.append(x if dtype is None else x.to(dtype))
            idxs.append(pidx)
        if self.positions == "last":
            order = torch.argsort(torch.cat(idxs))
            return torch.cat(parts)[order]
        # "all": reorder per prompt spans
        pieces: dict[int, Any] = {}
        for pidx, x, spans in zip(idxs, parts, self._spans_per_shard()):
            for p, (a, b) in zip(pidx.tolist(), spans):
                pieces[p] = x[a:b]
        return torch.cat([pieces[p] for p in range(self.n_prompts)])

    def _spans_per_shard(self) -> list[list[tuple[int, int]]]:
        from safetensors import safe_open

        out = []
        for f in self._shard_files():
            with safe_open(str(f), framework="pt") as h:
                off = h.get_tensor("token_offsets").tolist()
            out.append(list(zip(off[:-1], off[1:])))
        return out

    def token_spans(self) -> list[tuple[int, int]]:
        """For positions='all': ``[start, end)`` row span of each prompt in :meth:`load` order."""
        if self.positions != "all":
            raise ValueError("token_spans applies to stores collected with positions='all'")
        lengths = [r["n_tokens"] for r in self.prompt_meta()]
        spans, a = [], 0
        for n in lengths:
            spans.append((a, a + n))
            a += n
        return spans

    def prompt_meta(self) -> list[dict]:
        with open(self.dir / "prompts.jsonl") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return sorted(rows, key=lambda r: r["index"])


def collect_activations(model: Model, prompts: Sequence[Any], sites: Iterable[Any], out_dir: str | Path, *,
                        positions: str = "last", dtype: Any = "float16", batch_size: int = 32,
                        max_tokens_per_batch: int | None = 4096, resume: bool = True, progress: bool = True,
                        row_meta: Sequence[dict] | None = None, **tokenize_kw: Any) -> ActivationStore:
    """Collect ``sites`` for every prompt into a disk-backed :class:`ActivationStore`.

    Prompts are bucketed by token length (``batch_size`` rows and ``max_tokens_per_batch`` padded
    tokens per batch at most), run through the model (logits skipped), and each batch's
    activations at real tokens (``positions="all"``) or the last real token (``"last"``) are
    converted to ``dtype`` and written as one shard, atomically. ``resume=True`` skips shards
    already written by the same job (same model weights, prompts, sites and settings).
    """
    import torch

    from .results import data_hash
    from .sites import parse_sites

    if positions not in ("last", "all"):
        raise ValueError("positions must be 'last' (one row per prompt) or 'all' (one row per real token)")
    tdtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    site_list = [model.check_site(s).whole for s in parse_sites(sites)]
    if any(s.kind == "pattern" for s in site_list):
        raise ValueError("the activation store holds position-major sites; attention patterns are [heads, q, k] per prompt")
    prompts = list(prompts)
    if row_meta is not None and len(row_meta) != len(prompts):
        raise ValueError(f"row_meta has {len(row_meta)} rows for {len(prompts)} prompts")
    out = Path(out_dir)
    lengths = [len(model.tokenize(p, **tokenize_kw).real_tokens(0)) for p in prompts]
    batches = length_buckets(lengths, batch_size=batch_size, max_tokens=max_tokens_per_batch)
    dhash = data_hash([p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in prompts])
    fingerprint = dict(model=model.name, model_hash=model.weights_hash, data_hash=dhash,
                       sites=[s.name for s in site_list], positions=positions, dtype=str(tdtype),
                       batches=batches, tokenize={k: str(v) for k, v in tokenize_kw.items()})
    shards = ShardSet(out / "shards", fingerprint, resume=resume, suffix=".safetensors")
    (out / "index.json").unlink(missing_ok=True)  # rewritten at the end: present means complete
    it: Iterable = enumerate(batches)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(list(it), desc=f"collect {len(site_list)} sites", unit="batch")
    t0 = time.time()
    n_tokens = 0
    for b, idx in it:
        if shards.done(b):
            continue
        tokens = model.tokenize([prompts[i] for i in idx], padding_side="left", **tokenize_kw)
        _, cache = model.run_with_cache(tokens, site_list, positions=positions, logits=None)
        tensors = {"prompt_index": torch.tensor(idx, dtype=torch.long)}
        if positions == "all":
            real = tokens.attention_mask.bool()
            for s in site_list:
                tensors[s.name] = cache[s][real].to(device="cpu", dtype=tdtype)
            counts = real.sum(1).cpu()
            tensors["token_offsets"] = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        else:
            for s in site_list:
                tensors[s.name] = cache[s].to(device="cpu", dtype=tdtype)
        n_tokens += int(tokens.attention_mask.sum())
        atomic_save_tensors(shards.path(b), tensors)
        del cache, tensors
    meta_rows = []
    for i, n in enumerate(lengths):
        row = {"index": i, "n_tokens": n}
        if row_meta is not None:
            row.update(row_meta[i])
        meta_rows.append(row)
    atomic_write_text(out / "prompts.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in meta_rows))
    atomic_write_json(out / "index.json", {
        "sites": [s.name for s in site_list], "positions": positions, "dtype": str(tdtype).replace("torch.", ""),
        "n_prompts": len(prompts), "model": model.name, "model_hash": model.weights_hash, "data_hash": dhash,
        "shards": [{"file": shards.path(b).name, "n_prompts": len(idx)} for b, idx in enumerate(batches)],
        "complete": True, "seconds_last_run": round(time.time() - t0, 3), "tokens_last_run": n_tokens,
    })
    return ActivationStore(out)


def write_activation_store(out_dir: str | Path, arrays: dict[str, Any], *, rows_per_shard: int = 1024,
                           dtype: Any = None, model: str = "arrays", model_hash: str = "",
                           row_meta: Sequence[dict] | None = None) -> ActivationStore:
    """Write per-prompt arrays (``{site_name: [n_prompts, ...]}``, positions='last') as a store.

    For activations computed elsewhere, or synthetic ones (benchmarks, planted-direction tests).
    ``arrays`` values may be numpy arrays or tensors; they are written ``rows_per_shard`` rows at a
    time, so a memory-mapped numpy array never needs to fit in memory.
    """
    import numpy as np
    import torch

    from .results import data_hash
    from .sites import parse_site

    names = [parse_site(k).name for k in arrays]
    cols = list(arrays.values())
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise ValueError(f"all arrays need the same number of rows; got {[len(c) for c in cols]}")
    if row_meta is not None and len(row_meta) != n:
        raise ValueError(f"row_meta has {len(row_meta)} rows for {n} arrays rows")
    out = Path(out_dir)
    (out / "index.json").unlink(missing_ok=True)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    for old in shard_dir.glob("shard-*.safetensors"):
        old.unlink()
    tdtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    shards = []
    for b, a in enumerate(range(0, n, rows_per_shard)):
        z = min(n, a + rows_per_shard)
        tensors = {"prompt_index": torch.arange(a, z, dtype=torch.long)}
        for name, col in zip(names, cols):
            t = torch.as_tensor(np.asarray(col[a:z])) if not isinstance(col, torch.Tensor) else col[a:z]
            tensors[name] = t.to(tdtype) if tdtype is not None else t
        fname = f"shard-{b:06d}.safetensors"
        atomic_save_tensors(shard_dir / fname, tensors)
        shards.append({"file": fname, "n_prompts": z - a})
    meta_rows = [{"index": i, "n_tokens": 1, **(row_meta[i] if row_meta is not None else {})} for i in range(n)]
    atomic_write_text(out / "prompts.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in meta_rows))
    first = {name: (col[:1] if isinstance(col, torch.Tensor) else np.asarray(col[:1])) for name, col in zip(names, cols)}
    atomic_write_json(out / "index.json", {
        "sites": names, "positions": "last", "dtype": str(tdtype or next(iter(first.values())).dtype).replace("torch.", ""),
        "n_prompts": n, "model": model, "model_hash": model_hash,
        "data_hash": data_hash(n, names, [str(getattr(c, "shape", len(c))) for c in cols]),
        "shards": shards, "complete": True,
    })
    return ActivationStore(out)
