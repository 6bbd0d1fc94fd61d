"""Labelled prompt sets for moral and social probing, and cross-fitted probe scores per example.

- :func:`ethics_set`: ETHICS commonsense scenarios (Hendrycks et al. 2021), label 1 = clearly morally
  wrong; read at the scenario's last token (raw text). Adjacent scenarios are often contrastive minimal
  pairs ("I told my baby I loved/hated her"), so examples are grouped in blocks of consecutive rows and
  a block never straddles a split.
- :func:`group_mention_set`: the social group a BBQ context mentions, read at the last token of the
  mention (the context cut right after it), labelled by BBQ category (e.g. Religion vs Nationality).
  Groups are the group terms, so the main split tests on terms the probe never saw: a probe that only
  memorised words fails there. Templates are BBQ templates (held-out-template control).
- :func:`crossfit_scores`: held-out probe scores per example (mean-difference direction fitted on the
  other folds, group k-fold), to set a probe against behaviour example by example.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from .datasets import Example, LabelledPromptSet

__all__ = ["ethics_set", "group_mention_set", "crossfit_scores"]


def ethics_set(records: Sequence[dict], *, block: int = 2, name: str = "ethics-commonsense") -> LabelledPromptSet:
    """ETHICS records (``row``, ``label``, ``input``) -> a set read at the last token; ``block`` consecutive
    rows form one split group (contrastive neighbours stay together)."""
    ex = [Example(r["input"], int(r["label"]), group=f"rows{int(r['row']) // block}", meta={"row": int(r["row"])})
          for r in records]
    return LabelledPromptSet(name, ex, label_names=("not wrong", "wrong"), read="last_prompt", chat=False,
                             source="workbench.datasets.ethics_commonsense",
                             notes="raw scenario text; label 1 = clearly morally wrong (ETHICS convention)")


def group_mention_set(items: Sequence[Any], categories: Sequence[str], *, name: str = "bbq-group-mention"
                      ) -> LabelledPromptSet:
    """Contexts of BBQ items cut after each group mention, labelled by category index in ``categories``.

    Each item's two group answers give up to two examples (the context up to and including the first
    whole-word occurrence of the group's surface form); identical cut contexts are kept once."""
    cats = list(categories)
    seen: set[str] = set()
    ex = []
    for it in items:
        if it.category not in cats:
            continue
        for i in range(3):
            if i == it.unknown:
                continue
            term = it.surfaces[i]
            m = re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", it.context)
            if not m:
                continue
            prompt = it.context[:m.end()]
            if prompt in seen:
                continue
            seen.add(prompt)
            ex.append(Example(prompt, cats.index(it.category), group=term.lower(),
                              template=f"{it.category}:{it.question_index}", meta={"uid": it.uid, "term": term}))
    return LabelledPromptSet(name, ex, label_names=tuple(cats), read="last_prompt", chat=False,
                             source="workbench.datasets.bbq_items",
                             notes="read at the last token of the group mention; split groups are the group terms")


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
