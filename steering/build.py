"""Building steering vectors from data, per layer.

- :func:`contrastive_vectors`: two prompt sets (or prompt pairs) -> ``mean(pos) - mean(neg)`` of
  the activations at chosen positions (ActAdd, Turner et al. 2023, with prompt pairs such as
  "Love" / "Hate"; persona vectors, Chen et al. 2025, with response-token means), or the first
  principal component of paired differences (``aggregator="pca"``).
- :func:`build_caa_vectors`: contrastive activation addition (Rimsky et al. 2024): for each A/B
  record, the activation at the answer letter after the question with the matching answer minus
  the same with the non-matching answer, averaged over records.
- :func:`pca_vectors`: PCA of paired differences (a shortcut for ``aggregator="pca"``).
- :func:`diff_in_means`: difference in means of two unpaired prompt sets (the refusal direction
  of Arditi et al. 2024 is this at the post-instruction positions; see :mod:`steering.refusal`).
- :func:`probe_vector`: a probe's direction at one layer as a SteeringVector.

Every builder returns a :class:`~steering.vector.SteeringVector` whose provenance records the
model, its weights hash, the data hash and the sites, and whose ``meta`` records how it was built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.layers import resolve_layers
from workbench.results import data_hash
from workbench.sites import Site

from .aggregators import get_aggregator
from .record import normalize_items, record_activations
from .vector import SteeringVector

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = [
    "contrastive_vectors", "build_caa_vectors", "pca_vectors", "diff_in_means", "probe_vector",
    "BuildError",
]


class BuildError(WorkbenchError, ValueError):
    pass


def contrastive_vectors(model: Model, positive: Any, negative: Any, layers: Any = None, *, site: str = "resid_post",
                        positions: Any = "last", aggregator: Any = "mean_diff", chat: bool = True,
                        system: str | None = None, assistant_prefix: str | None = None, batch_size: int = 16,
                        name: str | None = None, method: str | None = None, progress: bool = False,
                        meta: dict | None = None) -> SteeringVector:
    """``aggregator(acts(positive), acts(negative))`` at ``site`` of each layer.

    ``positive`` / ``negative`` are prompt items (strings, chat messages, or dicts with
    ``prompt``/``system``/``assistant_prefix``/``response``; see :mod:`steering.record`); for
    ``aggregator="pca"`` they are pairs (``positive[i]`` with ``negative[i]``).
    """
    agg_name, agg = get_aggregator(aggregator)
    layers = resolve_layers(model, layers)
    pos = normalize_items(positive, system=system, assistant_prefix=assistant_prefix)
    neg = normalize_items(negative, system=system, assistant_prefix=assistant_prefix)
    if isinstance(positions, (list, tuple)):
        raise BuildError("a steering vector reads one position per item: use 'last', 'mean', 'response' or an int")
    kw = dict(site=site, positions=positions, chat=chat, batch_size=batch_size)
    acts = record_activations(model, pos + neg, layers, progress=progress, **kw)
    n = len(pos)
    vectors = {Site(site, L): agg(a[:n], a[n:]) for L, a in acts.items()}
    settings = dict(site=site, positions=positions, aggregator=agg_name, chat=chat)
    dh = data_hash([p.to_dict() for p in pos], [p.to_dict() for p in neg], settings)
    m = {"name": name, "aggregator": agg_name, "positions": positions, "n_positive": len(pos),
         "n_negative": len(neg), "chat": chat, **(meta or {})}
    if agg_name == "pca":
        m["explained_variance_ratio"] = {L: _evr(a[:n], a[n:]) for L, a in acts.items()}
    return SteeringVector(vectors, method or agg_name,
                          model.provenance(data_hash=dh, sites=tuple(s.name for s in sorted(vectors))), m)


def _evr(pos: torch.Tensor, neg: torch.Tensor) -> float:
    d = (pos - neg).double()
    d = d - d.mean(0)
    s = torch.linalg.svdvals(d)
    tot = float((s ** 2).sum())
    return float(s[0] ** 2 / tot) if tot > 0 else 0.0


def pca_vectors(model: Model, positive: Any, negative: Any, layers: Any = None, **kw: Any) -> SteeringVector:
    """First principal component of paired differences per layer (see :func:`steering.aggregators.pca_difference`)."""
    return contrastive_vectors(model, positive, negative, layers, aggregator="pca", **kw)


def diff_in_means(model: Model, set_a: Any, set_b: Any, layers: Any = None, **kw: Any) -> SteeringVector:
    """``mean(acts(set_a)) - mean(acts(set_b))`` per layer; the sets need not be paired or of equal size."""
    kw.setdefault("method", "diff_in_means")
    return contrastive_vectors(model, set_a, set_b, layers, aggregator="mean_diff", **kw)


def build_caa_vectors(model: Model, pairs: Sequence[Any], layers: Any = None, *, site: str = "resid_post",
                      aggregator: Any = "mean_diff", balance_letters: bool = True, system: str | None = None,
                      batch_size: int = 16, name: str | None = None, progress: bool = False) -> SteeringVector:
    """Contrastive activation addition vectors (Rimsky et al. 2024, "Steering Llama 2 via Contrastive
    Activation Addition").

    For each A/B record (``question``, ``answer_matching_behavior``, ``answer_not_matching_behavior``,
    e.g. ``"(A)"``/``"(B)"``; dicts or ``ABItem``) the chat prompt is the question with the assistant
    turn opened by the answers' common prefix (``"("``), followed by the answer's own token (the
    letter): exactly the contexts and choice tokens of the shared A/B scorer
    (:func:`steering.scoring.ab_prompts`). The activation at that letter with the matching answer
    minus the one with the non-matching answer, averaged over records, is the vector at each layer.
    Multipliers apply to this raw difference (``scale="multiplier"``), as in the paper's -2..2.

    ``balance_letters`` (default): the difference at the letter contains the letter's own
    representation (``act(A) - act(B)``), which cancels only when the matching answer is A exactly
    as often as B. It rarely is in a sample (the CAA sets are balanced only roughly: myopic-reward
    474 A / 476 B), and on a small model that residue dominates the vector (on SmolLM2 the raw
    mean difference of 250 corrigible-neutral-HHH pairs is mostly letter imbalance). So the
    records are grouped by (matching letter, other letter), each group averaged, and the groups
    averaged with equal weight: ``(A,B)`` and ``(B,A)`` then cancel the letter term exactly.
    Groups without their mirror (e.g. ``(C,A)`` in survival-instinct) carry a letter term nothing
    cancels, so when any mirrored pair of groups exists they are left out (listed in
    ``meta["unmirrored_groups"]``, their record count in ``meta["n_excluded"]``); only when no group
    has its mirror (every record matches with the same letter, a deliberate "answer A" set) are all
    groups used. On SmolLM2, counting survival-instinct's 60 (C,A), 15 (D,A), 8 (E,A) and 3 (G,A)
    records as groups of equal weight made the vector's norm 36-51 at layers 6-12, against 1-4 for
    the other behaviours: it was mostly the letters. For ``aggregator="pca"`` each difference has
    its group's offset from the balanced mean removed before the PCA (else the letter axis is the
    first component).
    """
    from .aggregators import get_aggregator, pca_difference
    from .scoring import ab_prompts

    if not pairs:
        raise BuildError("no CAA records given")
    agg_name, agg = get_aggregator(aggregator)
    layers = resolve_layers(model, layers)
    ab = ab_prompts(model, pairs, system=system)
    tok = model.tokenizer
    pos, neg = ab.with_choice("matching"), ab.with_choice("other")
    acts = record_activations(model, pos + neg, layers, site=site, positions="last", batch_size=batch_size,
                              progress=progress)
    n = len(pos)
    keys = [(int(a), int(b)) for a, b in zip(ab.matching, ab.other)]
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    unmirrored = sorted(f"{tok.decode([a])}/{tok.decode([b])}" for (a, b) in groups if (b, a) not in groups)
    mirrored = [k for k in groups if (k[1], k[0]) in groups]
    used = mirrored if (balance_letters and mirrored) else list(groups)
    rows = torch.tensor(sorted(i for k in used for i in groups[k]))
    vectors = {}
    for L, a in acts.items():
        diffs = (a[:n] - a[n:]).double()
        if not balance_letters:
            vectors[Site(site, L)] = agg(a[:n], a[n:])
            continue
        gmeans = {k: diffs[groups[k]].mean(0) for k in used}
        balanced = torch.stack(list(gmeans.values())).mean(0)
        if agg_name == "mean_diff":
            vectors[Site(site, L)] = balanced.float()
        elif agg_name == "pca":
            adj = diffs[rows] - torch.stack([gmeans[keys[i]] for i in rows.tolist()]) + balanced
            vectors[Site(site, L)] = pca_difference(adj.float(), torch.zeros_like(adj).float())
        else:
            raise BuildError("balance_letters works with aggregator 'mean_diff' or 'pca'; pass balance_letters=False")
    letters = sorted({tok.decode([int(t)]) for t in torch.cat([ab.matching, ab.other])})
    dh = data_hash([[c, int(a), int(b)] for c, a, b in zip(ab.contexts, ab.matching, ab.other)],
                   dict(site=site, aggregator=agg_name, balance_letters=balance_letters))
    meta = {"name": name, "aggregator": agg_name, "positions": "last (the answer letter)", "n_positive": n,
            "n_negative": n, "chat": True, "balance_letters": balance_letters,
            "letter_groups": {f"{tok.decode([a])}/{tok.decode([b])}": len(i) for (a, b), i in sorted(groups.items())},
            "unmirrored_groups": unmirrored, "n_excluded": n - len(rows), "answer_tokens": letters, "system": system,
            "protocol": "CAA (Rimsky et al. 2024): activation at the answer letter"
                        + (", letter-balanced" if balance_letters else "")}
    method = "caa" if agg_name == "mean_diff" else f"caa_{agg_name}"
    return SteeringVector(vectors, method, model.provenance(data_hash=dh, sites=tuple(s.name for s in sorted(vectors))),
                          meta)


def probe_vector(direction: Any, layer: int, *, site: str = "resid_post", model: Any = None, name: str | None = None,
                 meta: dict | None = None) -> SteeringVector:
    """A probe's direction (a tensor, e.g. logistic-regression weights) at ``layer`` as a SteeringVector.

    Probe weights have an arbitrary scale: apply with ``scale="unit"`` or ``"relative"``."""
    return SteeringVector.from_tensor(direction, layer, site=site, method="probe", model=model,
                                      meta={"name": name, **(meta or {})})
