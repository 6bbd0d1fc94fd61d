"""Labelled prompt sets for moral and social probing, and cross-fitted probe scores per example.

- :func:`ethics_set`: ETHICS commonsense scenarios (Hendrycks et al. 2021), label 1 = clearly morally
  wrong; read at the scenario's last token (raw text). Adjacent scenarios are often contrastive minimal
  pairs ("I told my baby I loved/hated her"), so examples are grouped in blocks of consecutive rows and
  a block never straddles a split.
- :func:`group_mention_set`: the social category (e.g. Religion vs Nationality) of a BBQ group term,
  placed in neutral carrier sentences ("I talked with my {term}") and read at its last token, so examples
  of one carrier differ only in the term (BBQ's own contexts differ by category in their wording, which a
  probe reads at layer 0). Groups are the terms, so the main split tests on terms the probe never saw;
  templates are the carriers (held-out-carrier control).
- :func:`crossfit_scores`: held-out probe scores per example (mean-difference direction fitted on the
  other folds, group k-fold), to set a probe against behaviour example by example.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .datasets import Example, LabelledPromptSet

__all__ = ["ethics_set", "group_mention_set", "group_terms", "CARRIERS", "crossfit_scores"]


def ethics_set(records: Sequence[dict], *, block: int = 2, name: str = "ethics-commonsense") -> LabelledPromptSet:
    """ETHICS records (``row``, ``label``, ``input``) -> a set read at the last token; ``block`` consecutive
    rows form one split group (contrastive neighbours stay together)."""
    ex = [Example(r["input"], int(r["label"]), group=f"rows{int(r['row']) // block}", meta={"row": int(r["row"])})
          for r in records]
    return LabelledPromptSet(name, ex, label_names=("not wrong", "wrong"), read="last_prompt", chat=False,
                             source="workbench.datasets.ethics_commonsense",
                             notes="raw scenario text; label 1 = clearly morally wrong (ETHICS convention)")


#: Neutral carrier sentences: each example is a carrier cut right after the group term, so two examples of
#: one carrier differ only in the term.
CARRIERS = ("I talked with my {term}", "Yesterday a {term}", "The new coworker is {term}",
            "We sat next to a {term}", "My neighbour described herself as {term}", "The report mentioned a {term}")


def group_terms(items: Sequence[Any], categories: Sequence[str]) -> dict[str, list[str]]:
    """The group surface forms that BBQ ``items`` name as answers, per category (sorted, deduplicated)."""
    out: dict[str, set[str]] = {c: set() for c in categories}
    for it in items:
        if it.category in out:
            out[it.category].update(it.surfaces[i] for i in range(3) if i != it.unknown)
    return {c: sorted(v) for c, v in out.items()}


def group_mention_set(items: Sequence[Any], categories: Sequence[str], *, carriers: Sequence[str] = CARRIERS,
                      name: str = "bbq-group-mention") -> LabelledPromptSet:
    """BBQ group terms of ``categories`` in neutral carrier sentences, read at the term's last token and
    labelled by category index. Split groups are the terms (the test terms are unseen); templates are the
    carriers (held-out-carrier control). A term that two categories share is left out."""
    cats = list(categories)
    terms = group_terms(items, cats)
    seen: dict[str, int] = {}
    for c in cats:
        for t in terms[c]:
            seen[t.lower()] = seen.get(t.lower(), 0) + 1
    ex = []
    for k, c in enumerate(cats):
        for t in terms[c]:
            if seen[t.lower()] > 1:
                continue
            for j, carrier in enumerate(carriers):
                prompt = carrier.format(term=t)
                ex.append(Example(prompt, k, group=t.lower(), template=f"carrier{j}", meta={"term": t, "category": c}))
    return LabelledPromptSet(name, ex, label_names=tuple(cats), read="last_prompt", chat=False,
                             source="workbench.datasets.bbq_items",
                             notes="neutral carriers cut after the group term; split groups are the terms")


def crossfit_scores(x: np.ndarray, y: np.ndarray, groups: Sequence[Any], *, folds: int = 5, seed: int = 0
                    ) -> np.ndarray:
    """Held-out scores ``x @ (mean_pos - mean_neg)`` (centred on the training mean), each example scored by
    a direction fitted on the folds it is not in (group k-fold: a group is never split)."""
    from .splits import group_kfold

    x = np.asarray(x, dtype=float)
    y = np.asarray(y)
    out = np.full(len(y), np.nan)
    for train, test in group_kfold(y, np.asarray(groups), k=folds, seed=seed):
        tr, te = np.asarray(train), np.asarray(test)
        mu = x[tr].mean(0)
        d = x[tr][y[tr] == 1].mean(0) - x[tr][y[tr] == 0].mean(0)
        out[te] = (x[te] - mu) @ d
    return out
