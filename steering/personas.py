"""Personas defined by contrastive system prompts, and persona vectors (Chen et al. 2025).

A :class:`Persona` is a trait with five system prompts imposing it (``high``) and five matched
prompts imposing its direct opposite (``low``): same length, register and framing, so the
contrast is the trait and not a nuisance such as verbosity. The project ships its own
definitions (``steering/data/personas.json``: Big Five, Dark Triad and safety-relevant traits),
each naming the Anthropic persona-statement file that measures it and a rubric for a trait judge.

:func:`persona_vectors` follows Chen et al. (2025), "Persona Vectors": for each (high, low)
prompt pair and each question, generate a response under each system prompt, read the residual
stream averaged over the **response tokens** (with the system prompt in context) and take
``mean(high) - mean(low)`` per layer. ``source="prompt"`` is a cheaper variant without generation
(the activation at the last prompt token, where the response starts). Chen et al. keep only
responses a judge scores as expressing (or not) the trait; pass ``keep=`` to filter the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.layers import resolve_layers
from workbench.results import Provenance, data_hash
from workbench.sites import Site

from .aggregators import mean_difference
from .record import PromptItem, format_items, pad_left, record_activations
from .vector import SteeringVector

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["Persona", "load_personas", "PersonaVectors", "persona_vectors", "PersonaError", "FinetuningShift",
           "finetuning_shift"]


class PersonaError(WorkbenchError, ValueError):
    pass


@dataclass(frozen=True)
class Persona:
    """A trait imposed by system prompts (``high``) against its opposite (``low``).

    Attributes:
        name: identifier (``"agreeableness"``).
        kind: ``"big_five"``, ``"dark_triad"``, ``"safety"``...
        trait: the trait's name for a judge (``"desire for power"``).
        description: what the trait looks like (the trait judge's rubric).
        high, low: matched system prompts imposing the trait and its opposite.
        statements: the Anthropic persona-statement file measuring the trait (or None).
    """

    name: str
    kind: str
    trait: str
    description: str
    high: tuple[str, ...]
    low: tuple[str, ...]
    statements: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "high", tuple(self.high))
        object.__setattr__(self, "low", tuple(self.low))
        if not self.high or len(self.high) != len(self.low):
            raise PersonaError(f"persona {self.name!r} needs matched high/low system prompts "
                               f"(got {len(self.high)} high, {len(self.low)} low)")

    def system_prompt(self, index: int = 0, pole: str = "high") -> str:
        prompts = self.high if pole == "high" else self.low
        return prompts[index % len(prompts)]

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "trait": self.trait, "description": self.description,
                "high": list(self.high), "low": list(self.low), "statements": self.statements}


def load_personas(names: Iterable[str] | None = None, *, path: str | Path | None = None) -> list[Persona]:
    """The shipped personas (or those in ``path``), optionally only ``names`` (in that order)."""
    p = Path(path) if path is not None else Path(__file__).resolve().parent / "data" / "personas.json"
    doc = json.loads(p.read_text())
    table = {d["name"]: Persona(**d) for d in doc["personas"]}
    if names is None:
        return list(table.values())
    out = []
    for n in names:
        if n not in table:
            raise PersonaError(f"unknown persona {n!r}; have {sorted(table)}")
        out.append(table[n])
    return out


@dataclass
class PersonaVectors:
    """Persona vectors by name, with the responses they were read from.

    Attributes:
        vectors: ``{persona name: SteeringVector}`` (per layer; ``mean(high) - mean(low)``).
        responses: one dict per generated response (persona, pole, pair, question, response, kept).
        source: ``"response"`` (mean over response tokens) or ``"prompt"`` (last prompt token).
    """

    vectors: dict[str, SteeringVector]
    responses: list[dict] = field(default_factory=list)
    source: str = "response"
    provenance: Provenance = field(default_factory=Provenance)

    def __getitem__(self, name: str) -> SteeringVector:
        if name not in self.vectors:
            raise KeyError(f"no persona vector {name!r}; have {sorted(self.vectors)}")
        return self.vectors[name]

    def __iter__(self):
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for name, v in self.vectors.items():
            for s, vec in sorted(v.vectors.items()):
                rows.append({"persona": name, "site": s.name, "layer": s.layer, "norm": float(vec.norm()),
                             "n_high": v.meta.get("n_positive"), "n_low": v.meta.get("n_negative"),
                             "source": self.source})
        return pd.DataFrame(rows)

    def cosine_matrix(self, layer: int):
        """Cosine similarity between persona vectors at ``layer`` (a DataFrame)."""
        import pandas as pd

        names = list(self.vectors)
        m = [[float(torch.nn.functional.cosine_similarity(self.vectors[a].vector(layer), self.vectors[b].vector(layer),
                                                          dim=0)) for b in names] for a in names]
        return pd.DataFrame(m, index=names, columns=names)

    def save(self, directory: str | Path) -> Path:
        from workbench.store import atomic_write_json

        d = Path(directory)
        for name, v in self.vectors.items():
            v.save(d / name)
        atomic_write_json(d / "persona_vectors.json", {"source": self.source, "personas": list(self.vectors),
                                                       "provenance": self.provenance.to_dict(),
                                                       "responses": self.responses})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "PersonaVectors":
        d = Path(directory)
        meta = json.loads((d / "persona_vectors.json").read_text())
        prov = meta.get("provenance", {})
        prov["sites"] = tuple(prov.get("sites", ()))
        vecs = {n: SteeringVector.load(d / n) for n in meta["personas"]}
        return cls(vecs, meta.get("responses", []), meta["source"], Provenance(**prov))


def _pole_items(personas: Sequence[Persona], questions: Sequence[str], n_pairs: int) -> list[tuple]:
    out = []
    for p in personas:
        for k in range(min(n_pairs, len(p.high))):
            for pole, prompts in (("high", p.high), ("low", p.low)):
                for q in questions:
                    out.append((p.name, pole, k, q, prompts[k]))
    return out


def persona_vectors(model: Model, personas: Sequence[Persona] | Sequence[str], layers: Any = None, *,
                    questions: Sequence[str] | None = None, n_questions: int | None = 10, n_pairs: int = 5,
                    source: str = "response", max_new_tokens: int = 48, site: str = "resid_post",
                    do_sample: bool = False, seed: int = 0, batch_size: int = 32,
                    keep: Callable[[Persona, str, str, str], bool] | None = None,
                    progress: bool = False) -> PersonaVectors:
    """Persona vectors for ``personas`` at ``layers`` (see the module docstring).

    Args:
        questions: open questions to answer (default: the shipped :func:`steering.data.persona_questions`,
            first ``n_questions``).
        n_pairs: how many of each persona's (high, low) system-prompt pairs to use.
        source: ``"response"`` (generate, then mean over response tokens; Chen et al. 2025) or
            ``"prompt"`` (the last prompt token, no generation).
        max_new_tokens, do_sample, seed: generation settings (greedy by default).
        keep: ``keep(persona, pole, question, response) -> bool``, e.g. a judge threshold.
    """
    from .data import persona_questions

    personas = [p if isinstance(p, Persona) else load_personas([p])[0] for p in personas]
    if source not in ("response", "prompt"):
        raise PersonaError(f"source must be 'response' or 'prompt', got {source!r}")
    layers = resolve_layers(model, layers)
    qs = list(questions) if questions is not None else persona_questions(n_questions)
    rows = _pole_items(personas, qs, n_pairs)
    items = [PromptItem(q, sysp) for (_n, _pole, _k, q, sysp) in rows]
    responses: list[dict] = []
    if source == "response":
        _, ids, _ = format_items(model, items, chat=True)
        gen = model.generate(pad_left(model, ids), max_new_tokens=max_new_tokens, do_sample=do_sample, seed=seed,
                             batch_size=batch_size, progress=progress)
        for (name, pole, k, q, sysp), text in zip(rows, gen.completions):
            ok = bool(text.strip())
            if ok and keep is not None:
                ok = bool(keep(next(p for p in personas if p.name == name), pole, q, text))
            responses.append({"persona": name, "pole": pole, "pair": k, "question": q, "response": text, "kept": ok})
        kept = [(r, PromptItem(r["question"], rows[i][4], None, r["response"])) for i, r in enumerate(responses)
                if r["kept"]]
        rec_rows = [r for r, _ in kept]
        rec_items = [it for _, it in kept]
        positions = "response"
    else:
        rec_rows = [{"persona": n, "pole": pole, "pair": k, "question": q} for (n, pole, k, q, _s) in rows]
        rec_items = items
        positions = "last"
    acts = record_activations(model, rec_items, layers, site=site, positions=positions, batch_size=batch_size,
                              progress=progress)
    vectors = {}
    for p in personas:
        hi = [i for i, r in enumerate(rec_rows) if r["persona"] == p.name and r["pole"] == "high"]
        lo = [i for i, r in enumerate(rec_rows) if r["persona"] == p.name and r["pole"] == "low"]
        if not hi or not lo:
            raise PersonaError(f"persona {p.name!r}: no kept {'high' if not hi else 'low'} responses to average")
        vecs = {Site(site, L): mean_difference(a[hi], a[lo]) for L, a in acts.items()}
        dh = data_hash(p.to_dict(), qs, [rec_rows[i] for i in hi + lo], source)
        vectors[p.name] = SteeringVector(
            vecs, "persona", model.provenance(data_hash=dh, seed=seed, sites=tuple(s.name for s in sorted(vecs))),
            {"name": p.name, "trait": p.trait, "source": source, "n_positive": len(hi), "n_negative": len(lo),
             "n_pairs": n_pairs, "n_questions": len(qs), "max_new_tokens": max_new_tokens if source == "response" else None,
             "protocol": "persona vectors (Chen et al. 2025): mean(high) - mean(low) over "
                         + ("response tokens" if source == "response" else "the last prompt token")},
        )
    prov = model.provenance(data_hash=data_hash([p.to_dict() for p in personas], qs, source), seed=seed,
                            sites=tuple(f"{site}.{L}" for L in layers))
    return PersonaVectors(vectors, responses, source, prov)


@dataclass
class FinetuningShift:
    """How far fine-tuning moved a model along a persona vector (Chen et al. 2025, monitoring fine-tuning shifts).

    ``values``: per prompt, ``(h_tuned - h_base) . v / |v|`` at ``site`` (the last prompt token), in residual
    units; ``estimate``: their mean with a bootstrap CI over prompts; ``relative``: the same divided by the
    base model's mean residual norm there (a scale-free size)."""

    values: Any
    estimate: Any
    relative: float
    site: str
    prompts: list
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({"prompt": [str(p) for p in self.prompts], "projection": self.values})

    def summary(self) -> str:
        """The mean projection of the fine-tuning shift on the persona vector, with its CI and relative size."""
        e = self.estimate
        return (f"fine-tuning shift along the persona vector at {self.site} over {len(self.prompts)} prompts: "
                f"{e.value:.3g} [{e.ci_low:.3g}, {e.ci_high:.3g}] ({self.relative:+.2%} of the base residual norm)")


def finetuning_shift(tuned: Any, base: Any, vector: SteeringVector, layer: int, prompts: Sequence[Any], *,
                     system: str | None = None, seed: int = 0, batch_size: int = 16) -> FinetuningShift:
    """Project the activation shift of a fine-tuned model onto a persona vector (Chen et al. 2025).

    Both models read the same chat-formatted ``prompts``; per prompt the difference of their residual streams at
    the vector's site in ``layer`` (last prompt token) is projected on the unit vector. Positive: fine-tuning
    moved the model toward the persona's high pole. The two models must share the tokenizer and width."""
    from workbench.stats import mean_estimate

    site = vector.site_at(layer)
    if tuned.facts.d_model != base.facts.d_model:
        raise PersonaError(f"{tuned.name} and {base.name} differ in width; a fine-tuning shift needs the same model")
    items = [PromptItem(p, system) for p in prompts]
    a = record_activations(tuned, items, [layer], site=site.kind, positions="last", batch_size=batch_size)[layer]
    b = record_activations(base, items, [layer], site=site.kind, positions="last", batch_size=batch_size)[layer]
    v = vector.vector(layer).float().cpu()
    u = v / v.norm()
    vals = ((a - b) @ u).numpy()
    est = mean_estimate(vals, seed=seed, statistic="finetuning shift along the persona vector")
    rel = float(est.value / b.norm(dim=-1).mean())
    prov = tuned.provenance(data_hash=data_hash([str(p) for p in prompts], vector.provenance.data_hash), seed=seed,
                            sites=(site.name,), extra={"base": base.name, "base_hash": base.weights_hash,
                                                       "protocol": "fine-tuning shift projection, Chen et al. 2025"})
    return FinetuningShift(vals, est, rel, site.name, list(prompts), prov)
