"""From a labelled prompt set to activations at an explicit read position, for every layer.

:func:`collect` runs a :class:`~workbench.models.HookedModel` over a
:class:`~probe.datasets.LabelledPromptSet` in length-bucketed batches and returns
:class:`Activations` ``[n_layers, n_examples, d_model]`` (in memory);
:func:`collect_to_store` writes a disk-backed :class:`~workbench.store.ActivationStore`
(resumable, bounded memory) for last-token reads of large sets.

How the text is built (one place, so every method reads the same tokens):

- chat formatting (the model's own template, with its generation prompt) when the set asks
  for it or, by default, when the model has a template; a chat-formatted prompt never gets an
  extra BOS;
- the output (answer token, response) is appended after the formatted prompt. The prompt's
  tokens are kept exactly: if tokenising prompt + output jointly would change the prompt's
  last tokens (a merge across the boundary), the output is tokenised on its own and the ids
  concatenated, and the example is flagged in ``Activations.notes``;
- the read position (:data:`probe.datasets.READ_POSITIONS`) selects the last prompt token,
  the last token of prompt + output (MRMBench), or a mean over the output or prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench.layers import resolve_layers
from workbench.results import Provenance

from .datasets import READ_POSITIONS, DatasetError, Example, LabelledPromptSet

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["Activations", "Encoded", "encode_example", "collect", "collect_cached", "collect_to_store"]


@dataclass
class Encoded:
    """Token ids of one example and the ``[start, end)`` token span that is read."""

    ids: list[int]
    span: tuple[int, int]
    text: str
    joined: bool = True  # False: prompt and output were tokenised separately


@dataclass
class Activations:
    """Activations of a labelled set: ``x [n_layers, n_examples, d]`` (float32, CPU).

    ``labels``, ``groups`` and ``templates`` are per example; ``layers`` are the layer ids of the
    first axis; ``read`` is the read position.
    """

    x: torch.Tensor
    layers: list[int]
    site_kind: str
    labels: np.ndarray
    groups: np.ndarray | None
    templates: np.ndarray | None
    read: str
    dataset: str
    label_names: tuple[str, ...]
    provenance: Provenance = field(default_factory=Provenance)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.x.shape[1])

    @property
    def d(self) -> int:
        return int(self.x.shape[2])

    def layer(self, layer: int) -> np.ndarray:
        """``[n, d]`` numpy array at one layer id."""
        return self.x[self.layers.index(layer)].numpy()

    def subset(self, idx: Any) -> "Activations":
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        t = torch.as_tensor(idx, dtype=torch.long)
        return Activations(self.x[:, t], self.layers, self.site_kind, self.labels[idx],
                           None if self.groups is None else self.groups[idx],
                           None if self.templates is None else self.templates[idx], self.read, self.dataset,
                           self.label_names, self.provenance, list(self.notes))

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({"example": np.arange(self.n), "label": self.labels,
                             "group": self.groups if self.groups is not None else None,
                             "template": self.templates if self.templates is not None else None,
                             **{f"norm_L{L}": self.x[i].norm(dim=-1).numpy() for i, L in enumerate(self.layers)}})

    def save(self, path: str | Path) -> Path:
        """Write as safetensors (``x``) with JSON metadata (labels, groups, templates, layers,
        read position, provenance); never pickle. Atomic."""
        import json

        from workbench.results import to_jsonable
        from workbench.store import atomic_save_tensors

        meta = {"layers": self.layers, "site_kind": self.site_kind, "labels": self.labels.tolist(),
                "groups": None if self.groups is None else [str(v) for v in self.groups],
                "templates": None if self.templates is None else [str(v) for v in self.templates],
                "read": self.read, "dataset": self.dataset, "label_names": list(self.label_names),
                "provenance": self.provenance.to_dict(), "notes": list(self.notes)}
        path = Path(path)
        atomic_save_tensors(path, {"x": self.x.contiguous()}, metadata={"activations": json.dumps(to_jsonable(meta))})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Activations":
        """Read what :meth:`save` wrote."""
        import json

        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["activations"])
            x = f.get_tensor("x")
        prov = meta["provenance"]
        return cls(x, list(meta["layers"]), meta["site_kind"], np.asarray(meta["labels"], dtype=np.int64),
                   None if meta["groups"] is None else np.asarray(meta["groups"], dtype=object),
                   None if meta["templates"] is None else np.asarray(meta["templates"], dtype=object),
                   meta["read"], meta["dataset"], tuple(meta["label_names"]),
                   Provenance(prov.get("model"), prov.get("model_hash"), prov.get("data_hash"), prov.get("seed"),
                              tuple(prov.get("sites") or ()), prov.get("extra") or {}), list(meta["notes"]))

    def to_store(self, out_dir: str | Path):
        """Write as an :class:`~workbench.store.ActivationStore` (one site per layer, positions
        'last'), with labels, groups and templates in the per-row metadata."""
        from workbench.store import write_activation_store

        arrays = {f"{self.site_kind}.{L}": self.x[i] for i, L in enumerate(self.layers)}
        meta = [{"label": int(self.labels[i]),
                 "group": None if self.groups is None else str(self.groups[i]),
                 "template": None if self.templates is None else str(self.templates[i])} for i in range(self.n)]
        return write_activation_store(out_dir, arrays, model=self.provenance.model or "arrays",
                                      model_hash=self.provenance.model_hash or "", row_meta=meta)


def _use_chat(model: Model, dataset: LabelledPromptSet, chat: bool | None) -> bool:
    want = dataset.chat if chat is None else chat
    if want is None:
        return bool(model.facts.has_chat_template)
    if want and not model.facts.has_chat_template:
        raise ValueError(f"chat=True but {model.name} has no chat template; pass chat=False")
    return bool(want)


def _prompt_text(model: Model, ex: Example, chat: bool, system: str | None, where: str) -> str:
    if chat:
        return model.format_chat(ex.prompt, system=system)
    if not isinstance(ex.prompt, str):
        raise DatasetError(f"{where}: the prompt is a list of chat messages but chat formatting is off; "
                           "pass chat=True (a model with a chat template) or give plain-text prompts")
    return ex.prompt


def _ids(model: Model, text: str, chat: bool) -> list[int]:
    return model.tokenize(text, prepend_bos=False if chat else None).real_tokens(0)


def encode_example(model: Model, ex: Example, read: str, *, chat: bool, system: str | None = None,
                   where: str = "example") -> Encoded:
    """Token ids and read span of one example (see the module docstring)."""
    if read not in READ_POSITIONS:
        raise DatasetError(f"read={read!r}; use one of {READ_POSITIONS}")
    ptext = _prompt_text(model, ex, chat, system, where)
    pids = _ids(model, ptext, chat)
    n_p = len(pids)
    if read == "last_prompt":
        return Encoded(pids, (n_p - 1, n_p), ptext)
    if read == "mean_prompt":
        content = ex.prompt if isinstance(ex.prompt, str) else [m for m in ex.prompt if m.get("role") == "user"][-1]["content"]
        c0 = ptext.rfind(content)
        if c0 < 0:
            return Encoded(pids, (0, n_p), ptext)
        a = len(_ids(model, ptext[:c0], chat)) if c0 > 0 else 0
        b = len(_ids(model, ptext[:c0 + len(content)], chat))
        return Encoded(pids, (min(a, n_p - 1), max(min(b, n_p), min(a, n_p - 1) + 1)), ptext)
    if not ex.output:
        raise DatasetError(f"{where}: read={read!r} needs an output to append; this example has none")
    full = ptext + ex.output
    fids = _ids(model, full, chat)
    joined = fids[:n_p] == pids and len(fids) > n_p
    if not joined:
        out_ids = model.tokenizer(ex.output, add_special_tokens=False)["input_ids"]
        if not out_ids:
            raise DatasetError(f"{where}: the output {ex.output!r} tokenises to nothing")
        fids = pids + list(out_ids)
    span = (len(fids) - 1, len(fids)) if read == "last" else (n_p, len(fids))
    return Encoded(fids, span, full, joined)


def collect(model: Model, dataset: LabelledPromptSet, *, layers: Any = None, site_kind: str = "resid_post",
            read: str | None = None, chat: bool | None = None, system: str | None = None, batch_size: int = 16,
            max_tokens_per_batch: int = 8192, progress: bool = False) -> Activations:
    """Activations of every example at ``site_kind`` of each layer, at the read position.

    Args:
        model: a :class:`~workbench.models.HookedModel`.
        dataset: the labelled set (its ``read``/``chat``/``system`` are defaults).
        layers: ``None``/``"all"``, ``"final"``, an int or a list.
        site_kind: ``"resid_post"`` (default), ``"resid_pre"``, ``"resid_mid"``, ``"attn_out"``, ``"mlp_out"``.
        read: override the set's read position.
        chat: override chat formatting (default: the set's choice, else the model's template).
        batch_size, max_tokens_per_batch: batch bounds (prompts are length-bucketed).
    """
    from workbench.models.tokens import Tokens
    from workbench.store import length_buckets

    read = read or dataset.read
    if read not in READ_POSITIONS:
        raise DatasetError(f"read={read!r}; use one of {READ_POSITIONS}")
    use_chat = _use_chat(model, dataset, chat)
    system = system if system is not None else dataset.system
    Ls = resolve_layers(model, layers)
    sites = [f"{site_kind}.{L}" for L in Ls]
    enc = [encode_example(model, ex, read, chat=use_chat, system=system, where=f"{dataset.name} example {i}")
           for i, ex in enumerate(dataset.examples)]
    d = model.facts.d_model
    x = torch.zeros(len(Ls), len(enc), d, dtype=torch.float32)
    # identical (ids, span) pairs are computed once (contrastive sets repeat each prompt per answer)
    first: dict[tuple, int] = {}
    uniq: list[int] = []
    copy_from = np.empty(len(enc), dtype=np.int64)
    for i, e in enumerate(enc):
        key = (tuple(e.ids), e.span)
        if key not in first:
            first[key] = i
            uniq.append(i)
        copy_from[i] = first[key]
    lengths = [len(enc[i].ids) for i in uniq]
    batches = [[uniq[j] for j in b] for b in
               length_buckets(lengths, batch_size=batch_size, max_tokens=max_tokens_per_batch)]
    last_only = all(e.span == (len(e.ids) - 1, len(e.ids)) for e in enc)
    it = batches
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(batches, desc=f"activations {dataset.name}", unit="batch")
    for idx in it:
        rows = [Tokens(torch.tensor([enc[i].ids]), torch.ones(1, len(enc[i].ids), dtype=torch.long)) for i in idx]
        tokens = model.tokenize(rows, padding_side="left")
        if last_only:
            _, cache = model.run_with_cache(tokens, sites, positions="last", logits=None, dtype=torch.float32,
                                            device="cpu")
            for li, s in enumerate(sites):
                x[li, idx] = cache[s].float()
        else:
            _, cache = model.run_with_cache(tokens, sites, positions="all", logits=None, dtype=torch.float32,
                                            device="cpu")
            starts = tokens.starts.cpu().tolist()
            for li, s in enumerate(sites):
                t = cache[s]
                for j, i in enumerate(idx):
                    a, b = enc[i].span
                    x[li, i] = t[j, starts[j] + a:starts[j] + b].mean(0)
        del cache
    dup = np.flatnonzero(copy_from != np.arange(len(enc)))
    if dup.size:
        x[:, torch.as_tensor(dup)] = x[:, torch.as_tensor(copy_from[dup])]
    notes = []
    if dup.size:
        notes.append(f"{dup.size} example(s) repeat another example's tokens exactly; computed once")
    split = sum(not e.joined for e in enc)
    if split:
        notes.append(f"{split} example(s): prompt and output tokenised separately (a joint tokenisation would "
                     "have merged tokens across the boundary)")
    prov = model.provenance(data_hash=dataset.data_hash(), sites=tuple(sites),
                            extra={"read": read, "chat": use_chat, "system": system, "dataset": dataset.name})
    groups = dataset.groups
    return Activations(x, Ls, site_kind, dataset.labels, groups, dataset.templates, read, dataset.name,
                       dataset.label_names, prov, notes)


def collect_to_store(model: Model, dataset: LabelledPromptSet, out_dir: str | Path, *, layers: Any = None,
                     site_kind: str = "resid_post", read: str | None = None, chat: bool | None = None,
                     system: str | None = None, dtype: str = "float16", batch_size: int = 32,
                     resume: bool = True, progress: bool = True):
    """Collect last-token reads (``"last_prompt"``/``"last"``) into a disk-backed
    :class:`~workbench.store.ActivationStore` (length-bucketed, resumable, memory bounded by a
    batch). Labels, groups and templates go to the store's per-prompt metadata, so
    :func:`probe.sweep.layer_sweep` can read them back. Mean reads: use :func:`collect` and
    :meth:`Activations.to_store`."""
    from workbench.store import collect_activations

    read = read or dataset.read
    if read not in ("last_prompt", "last"):
        raise DatasetError(f"collect_to_store supports last-token reads; got read={read!r} (use collect() and "
                           "Activations.to_store for means)")
    use_chat = _use_chat(model, dataset, chat)
    system = system if system is not None else dataset.system
    texts = []
    for i, ex in enumerate(dataset.examples):
        e = encode_example(model, ex, read, chat=use_chat, system=system, where=f"{dataset.name} example {i}")
        if not e.joined:
            raise DatasetError(f"{dataset.name} example {i}: prompt and output merge across the boundary when "
                               "tokenised jointly; use collect() (which concatenates ids) for this set")
        texts.append(e.text)
    groups, templates = dataset.groups, dataset.templates
    meta = [{"label": int(ex.label), "group": str(groups[i]),
             "template": None if templates is None else str(templates[i])} for i, ex in enumerate(dataset.examples)]
    sites = [f"{site_kind}.{L}" for L in resolve_layers(model, layers)]
    kw = {"prepend_bos": False} if use_chat else {}
    return collect_activations(model, texts, sites, out_dir, positions="last", dtype=dtype, batch_size=batch_size,
                               resume=resume, progress=progress, row_meta=meta, **kw)


def collect_cached(model: Model, dataset: LabelledPromptSet, cache_dir: str | Path | None, **kw: Any) -> Activations:
    """:func:`collect`, or its saved result when ``cache_dir`` holds one for the same model
    weights, data, read position, chat formatting, layers and site (the file name is a hash of
    all of them, so a stale cache is never read; one that does not read back is collected again).
    ``cache_dir=None``: no caching."""
    if cache_dir is None:
        return collect(model, dataset, **kw)
    from workbench.results import data_hash

    read = kw.get("read") or dataset.read
    use_chat = _use_chat(model, dataset, kw.get("chat"))
    system = kw.get("system") if kw.get("system") is not None else dataset.system
    layers = resolve_layers(model, kw.get("layers"))
    key = data_hash(model.weights_hash,
                    dataset.data_hash(), read, use_chat, system, layers, kw.get("site_kind", "resid_post"))
    path = Path(cache_dir) / f"{dataset.name}_{key}.safetensors"
    if path.exists():
        try:
            return Activations.load(path)
        except Exception:  # noqa: BLE001 - truncated or unreadable (a writer killed without atomic renames): redone
            path.unlink(missing_ok=True)
    acts = collect(model, dataset, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    acts.save(path)
    return acts
