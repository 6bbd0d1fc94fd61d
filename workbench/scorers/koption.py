"""K-option choice from next-token logits: Likert 1-5, A/B/C, multi-token options.

This generalises the A/B scorer (:mod:`workbench.scorers.ab`) from two answers to K. Each item is a
prompt and K answer strings in an explicit order (the order the prompt lists them in is the caller's
business, and so is the value each answer stands for). For each item we tokenise
``prompt + option_k`` for every option; the longest common token prefix of the K sequences is the
context (it holds the prompt and any answer prefix the options share, such as ``" ("``), and the
rest of each sequence is that option's *path*. The paths form a prefix tree (trie).

Two rules turn next-token logits into probabilities over the K options:

``rule="branch"`` (default)
    At every node of the trie where paths split, the model chooses among the branch tokens, and
    only among them: ``softmax`` of the branch tokens' logits at that node. An option's probability
    is the product of its choices along its path; tokens where a path does not branch are forced
    and not scored. When the K options differ at their first token (``"1"``..``"5"``, ``"A"``/``"B"``/``"C"``)
    this is one forward pass and ``p_k = exp(l_k) / sum_j exp(l_j)`` over the K first differing
    tokens; with K = 2 it is exactly :func:`~workbench.scorers.ab.ab_scores`' p(matching). When options
    share a first token (``"Strongly agree"`` / ``"Strongly disagree"`` / ``"Agree"``...), the shared token
    decides between the group and the other options, and a second pass at the split decides within
    the group. Every decision is one the model actually faces, normalised over the answers still
    possible at that point, and no option is favoured for being longer or shorter.

``rule="sequence"``
    The teacher-forced probability of each option's whole path, normalised over the K options:
    ``p_k = exp(log p(path_k | context)) / sum_j exp(log p(path_j | context))``. Forced tokens count,
    so options with more tokens are penalised by whatever the model puts elsewhere at those tokens.

Both rules equal the corresponding teacher-forced computation with
:func:`workbench.scorers.logprob.continuation_logprobs` (the tests check this).

Options whose token path is a prefix of another's (``"1"`` and ``"10"``) are refused: after ``"1"`` the
model could still be writing ``"10"``, so ``p("1")`` is not defined by next-token logits; add a delimiter
(``"1)"``, ``"10)"``) or relabel.

Reported per item: the probabilities over the K options (``probs``, ``[n, K]``), the probability mass
that the full next-token distribution puts on the first branch tokens (``mass``: low means the model
is not answering in the format at all), the expected value under the given option values (for
Likert: the expected score), the argmax option and its value. The aggregate is the mean expected
value with a bootstrap CI over items (clustered when prompts repeat or ``groups`` is given).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from workbench.errors import WorkbenchError
from workbench.results import data_hash
from workbench.scorers.base import ScoreResult, register_scorer, resolve_groups
from workbench.stats import Estimate, bootstrap

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["KOptionItem", "KOptionResult", "KOptionFormatError", "koption_scores", "KOptionScorer",
           "plot_koption", "RULES"]

#: The rules turning logits into option probabilities (see the module docstring).
RULES = ("branch", "sequence")


class KOptionFormatError(WorkbenchError, ValueError):
    """K-option items that cannot be scored as given (too few options, duplicates, options that
    are token prefixes of each other, unequal K in one batch, values of the wrong length)."""


@dataclass(frozen=True)
class KOptionItem:
    """One question with K answers in an explicit order.

    Attributes:
        prompt: the user text (wrapped in the chat template when ``chat=True``) or the full raw text.
        options: the K answer strings exactly as they follow the prompt (``"1"``, ``" (A)"``,
            ``"Strongly agree"``); with a chat template they follow the assistant turn (and
            ``assistant_prefix`` when given).
        values: the value each option stands for (e.g. the Likert score of each answer in the order
            listed); default ``1..K``. The expected value is taken under these.
        meta: anything to carry along (item id, trait, key, format...).
    """

    prompt: str
    options: tuple[str, ...]
    values: tuple[float, ...] | None = None
    meta: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise KOptionFormatError(f"prompt must be a string; got {type(self.prompt).__name__}")
        if isinstance(self.options, str):
            raise KOptionFormatError(f"options must be a sequence of strings, not the single string {self.options!r}")
        opts = tuple(self.options)
        if len(opts) < 2:
            raise KOptionFormatError(f"an item needs at least 2 options; got {list(opts)!r}")
        if any(not isinstance(o, str) or not o for o in opts):
            raise KOptionFormatError(f"options must be non-empty strings; got {list(opts)!r}")
        if len(set(opts)) != len(opts):
            dup = sorted({o for o in opts if opts.count(o) > 1})
            raise KOptionFormatError(f"options must be distinct; {dup!r} appear more than once in {list(opts)!r}")
        object.__setattr__(self, "options", opts)
        if self.values is not None:
            vals = tuple(float(v) for v in self.values)
            if len(vals) != len(opts):
                raise KOptionFormatError(f"values has {len(vals)} entries for {len(opts)} options {list(opts)!r}; "
                                         "give one value per option, in the options' order")
            if not all(np.isfinite(vals)):
                raise KOptionFormatError(f"values must be finite numbers; got {list(vals)!r}")
            object.__setattr__(self, "values", vals)

    @property
    def k(self) -> int:
        return len(self.options)

    @property
    def option_values(self) -> tuple[float, ...]:
        return self.values if self.values is not None else tuple(float(i) for i in range(1, self.k + 1))


@dataclass(frozen=True, eq=False)
class KOptionResult(ScoreResult):
    """Per-item probabilities over K options. ``values`` are the expected values.

    Attributes (beyond :class:`~workbench.scorers.base.ScoreResult`):
        probs: ``[n, K]`` probabilities over the options (rows sum to 1), in each item's option order.
        mass: ``[n]`` full-softmax probability of the first branch tokens (format adherence).
        option_values: ``[n, K]`` the value of each option (as given, or ``1..K``).
        options: the option strings per item.
        rule: ``"branch"`` or ``"sequence"``.
    """

    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    mass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    option_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    options: tuple[tuple[str, ...], ...] = ()
    rule: str = "branch"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("probs", "mass", "option_values"):
            a = np.array(getattr(self, name), dtype=float, copy=True)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "options", tuple(tuple(o) for o in self.options))
        if self.probs.shape != self.option_values.shape or self.probs.shape[0] != self.n or self.mass.size != self.n:
            raise ValueError(f"KOptionResult: probs {self.probs.shape}, option_values {self.option_values.shape} and "
                             f"mass {self.mass.shape} must all have {self.n} rows")

    @property
    def k(self) -> int:
        return int(self.probs.shape[1])

    @property
    def expected(self) -> np.ndarray:
        """Expected value per item under ``option_values`` (the same as ``values``)."""
        return self.values

    @property
    def argmax(self) -> np.ndarray:
        """Index of the most probable option per item (ties: the first listed)."""
        return self.probs.argmax(axis=1)

    @property
    def argmax_value(self) -> np.ndarray:
        """The value of the most probable option per item."""
        return self.option_values[np.arange(self.n), self.argmax]

    def mass_estimate(self, seed: int = 0) -> Estimate:
        """Mean format mass with a bootstrap CI over items."""
        return bootstrap(self.mass, seed=seed, groups=self.groups)

    def option_shares(self, seed: int = 0) -> list[Estimate]:
        """Mean probability of each option position (first listed, second...) with bootstrap CIs."""
        return [bootstrap(self.probs[:, j], seed=seed, groups=self.groups) for j in range(self.k)]

    def to_dataframe(self) -> Any:
        """One row per item: item, expected value, ``p_0..p_{K-1}``, mass, argmax, argmax value, details."""
        df = super().to_dataframe()
        df = df.rename(columns={"value": "expected"})
        for j in range(self.k):
            df[f"p_{j}"] = self.probs[:, j]
        df["mass"] = self.mass
        df["argmax"] = self.argmax
        df["argmax_value"] = self.argmax_value
        df["rule"] = self.rule
        return df

    def summary(self) -> str:
        shares = ", ".join(f"{e.value:.2f}" for e in self.option_shares())
        m = self.mass_estimate()
        return (f"{self.n} items, K={self.k} options ({self.rule} rule): expected value {self.aggregate}; "
                f"mean p by listed position [{shares}]; format mass {m.value:.2f} [{m.ci_low:.2f}, {m.ci_high:.2f}]"
                + (f"; {self.n_unscored} unscored" if self.n_unscored else ""))


# ---------------------------------------------------------------------------------------------
# Tokenisation: context, trie of option paths, the decisions each option needs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    context: tuple[int, ...]
    paths: tuple[tuple[int, ...], ...]
    # per option: list of (node prefix (path tokens after context), chosen token, candidate tokens)
    decisions: tuple[tuple[tuple[tuple[int, ...], int, tuple[int, ...]], ...], ...]
    root_tokens: tuple[int, ...]


def _plan_item(tok: Any, text: str, options: Sequence[str], rule: str, bos: int | None) -> _Plan:
    seqs = [list(tok(text + o, add_special_tokens=False)["input_ids"]) for o in options]
    c = 0
    while all(len(s) > c for s in seqs) and len({s[c] for s in seqs}) == 1:
        c += 1
    context = tuple(([bos] if bos is not None else []) + seqs[0][:c])
    if not context:
        raise KOptionFormatError("the prompt is empty and the options share no leading token: there is no context "
                                 "to read next-token logits from; give a prompt (or prepend_bos=True)")
    paths = tuple(tuple(s[c:]) for s in seqs)
    for i, p in enumerate(paths):
        for j, q in enumerate(paths):
            if i != j and len(p) <= len(q) and q[:len(p)] == p:
                raise KOptionFormatError(
                    f"option {options[i]!r} is a token prefix of option {options[j]!r} after this prompt: once the "
                    f"model has written {options[i]!r} it could still be writing {options[j]!r}, so next-token "
                    "logits do not define p(option). Add a delimiter to every option (e.g. '1)' and '10)') or "
                    "relabel the options")
    children: dict[tuple[int, ...], set[int]] = {}
    for p in paths:
        for d in range(len(p)):
            children.setdefault(p[:d], set()).add(p[d])
    decisions = []
    for p in paths:
        dec = []
        for d in range(len(p)):
            cands = tuple(sorted(children[p[:d]]))
            if rule == "sequence" or len(cands) > 1:
                dec.append((p[:d], p[d], cands))
        decisions.append(tuple(dec))
    return _Plan(context, paths, tuple(decisions), tuple(p[0] for p in paths))


def koption_scores(model: Model, items: Sequence[KOptionItem | Mapping[str, Any]], *, rule: str = "branch",
                   chat: bool = True, system: str | None = None, assistant_prefix: str = "",
                   prompt_template: str = "{prompt}", interventions: Any = None, groups: Sequence[Any] | None = None,
                   batch_size: int = 16, seed: int = 0, prepend_bos: bool | None = None,
                   progress: bool = False) -> KOptionResult:
    """Probabilities over K answer options per item, their expected value, argmax and format mass.

    Args:
        items: :class:`KOptionItem` or dicts with ``prompt``, ``options`` and optionally ``values``, ``meta``.
            Every item must have the same K (score A/B and A/B/C items in separate calls).
        rule: ``"branch"`` (default) or ``"sequence"``; see the module docstring.
        chat: wrap the prompt in the model's chat template (options follow the assistant turn). Models without
            a chat template need ``chat=False`` (a clear error says so).
        system: a system message (chat only), e.g. a persona prompt. ``None`` keeps the template's default.
        assistant_prefix: text after the assistant turn (or after a raw prompt) and before the option, e.g.
            ``"Answer: "``; it is part of the context.
        prompt_template: format of the user text; ``{prompt}`` is replaced by the item's prompt.
        interventions: active during the scoring forward passes (e.g. a steering vector).
        groups: a cluster id per item for the aggregate's bootstrap (default: clustered by prompt when prompts
            repeat).
        prepend_bos: BOS before raw (non-chat) text; default the model's policy.
        progress: a tqdm bar over the forward batches.
    """
    import torch

    from workbench.interventions import as_interventions

    if rule not in RULES:
        raise KOptionFormatError(f"rule must be one of {RULES}; got {rule!r}")
    items = [it if isinstance(it, KOptionItem) else KOptionItem(
        it["prompt"], tuple(it["options"]), it.get("values"), it.get("meta")) for it in items]
    if len(items) < 2:
        raise KOptionFormatError("koption_scores needs at least 2 items (for a confidence interval)")
    ks = {it.k for it in items}
    if len(ks) != 1:
        raise KOptionFormatError(f"all items in one call must have the same number of options; got K in {sorted(ks)}. "
                                 "Score items with different K in separate calls")
    if chat and not model.facts.has_chat_template:
        raise KOptionFormatError(f"{model.name} has no chat template; call koption_scores(..., chat=False) and put any "
                                 "question/answer framing in the prompt")
    if system is not None and not chat:
        raise KOptionFormatError("system= needs chat=True (a raw prompt has no system turn)")
    bos = None
    if not chat:
        use_bos = model.prepend_bos if prepend_bos is None else prepend_bos
        if use_bos and model.facts.bos_token_id is not None:
            bos = model.facts.bos_token_id
    tok = model.tokenizer
    plans = []
    for i, it in enumerate(items):
        user = prompt_template.format(prompt=it.prompt)
        text = (model.format_chat(user, system=system) if chat else user) + assistant_prefix
        try:
            plans.append(_plan_item(tok, text, it.options, rule, bos))
        except KOptionFormatError as e:
            raise KOptionFormatError(f"item {i}: {e}") from None
    # every node (token prefix) whose next-token distribution is needed, and which tokens of it
    wanted: dict[tuple[int, ...], set[int]] = {}
    for pl in plans:
        for dec in pl.decisions:
            for node, _, cands in dec:
                wanted.setdefault(pl.context + node, set()).update(cands)
        wanted.setdefault(pl.context, set()).update(pl.root_tokens)
    nodes = list(wanted)
    n_ctx = getattr(getattr(model, "facts", None), "n_ctx", None)
    too_long = [len(x) for x in nodes if n_ctx is not None and len(x) > n_ctx]
    if too_long:
        from workbench.models.hooked import ContextLengthError

        raise ContextLengthError(f"{len(too_long)} scoring context(s) are longer than {model.name}'s context of "
                                 f"{n_ctx} tokens (longest {max(too_long)}); shorten the prompts or use a model with a "
                                 "longer context")
    logp: dict[tuple[int, ...], dict[int, float]] = {}
    # rows of similar length share a batch (less padding)
    order = sorted(range(len(nodes)), key=lambda j: len(nodes[j]))
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="k-option scoring", unit="batch")
    for a in starts:
        idx = order[a:a + batch_size]
        toks = model._pad([list(nodes[j]) for j in idx], "left", None, {})
        with torch.inference_mode():
            lsm = torch.log_softmax(model.forward(toks, interventions=interventions, logits="last").float(), -1).cpu()
        for r, j in enumerate(idx):
            ids = sorted(wanted[nodes[j]])
            logp[nodes[j]] = dict(zip(ids, lsm[r, ids].tolist()))
    n, k = len(items), ks.pop()
    probs, mass = np.zeros((n, k)), np.zeros(n)
    for i, pl in enumerate(plans):
        root = logp[pl.context]
        mass[i] = float(np.exp([root[t] for t in set(pl.root_tokens)]).sum())
        score = np.zeros(k)
        for o, dec in enumerate(pl.decisions):
            s = 0.0
            for node, chosen, cands in dec:
                lp = logp[pl.context + node]
                if rule == "branch":
                    c = np.array([lp[t] for t in cands])
                    s += lp[chosen] - (c.max() + np.log(np.exp(c - c.max()).sum()))
                else:
                    s += lp[chosen]
            score[o] = s
        e = np.exp(score - score.max())
        probs[i] = e / e.sum()
    vals = np.array([it.option_values for it in items], dtype=float)
    expected = (probs * vals).sum(axis=1)
    prompts = tuple(it.prompt for it in items)
    grp = resolve_groups(prompts, groups, n)
    agg = bootstrap(expected, seed=seed, groups=grp)
    details = tuple({"mass": float(mass[i]), "argmax_option": items[i].options[int(probs[i].argmax())],
                     "branch_tokens": [tok.decode([t]) for t in plans[i].root_tokens],
                     "n_decisions": [len(d) for d in plans[i].decisions],
                     **({"meta": dict(items[i].meta)} if items[i].meta else {})}
                    for i in range(n))
    prov = model.provenance(
        data_hash=data_hash([(it.prompt, it.options, it.option_values) for it in items]), seed=seed,
        extra={"scorer": "koption", "rule": rule, "chat": chat, "system": system, "assistant_prefix": assistant_prefix,
               "prompt_template": prompt_template, "interventions": len(as_interventions(interventions))})
    return KOptionResult("koption", expected, prompts, agg, details, groups=grp, provenance=prov, probs=probs,
                         mass=mass, option_values=vals, options=tuple(it.options for it in items), rule=rule)


@register_scorer("koption")
class KOptionScorer:
    """Registered form: ``get_scorer("koption", model=m, rule="branch")(items, interventions=...)``."""

    name = "koption"

    def __init__(self, model: Model, **options: Any):
        self.model, self.options = model, options

    def __call__(self, items: Sequence[Any], *, interventions: Any = None, **kw: Any) -> KOptionResult:
        return koption_scores(self.model, items, interventions=interventions, **{**self.options, **kw})


def plot_koption(result: KOptionResult, ax: Any = None) -> Any:
    """Mean probability of each listed option position (bars with bootstrap CIs) and the format mass."""
    from workbench.plots import figure_and_ax

    fig, ax = figure_and_ax(ax, (5.0, 3.5))
    shares = result.option_shares()
    x = np.arange(result.k)
    v = np.array([e.value for e in shares])
    err = np.array([[e.value - e.ci_low for e in shares], [e.ci_high - e.value for e in shares]])
    ax.bar(x, v, yerr=err, color="#4c72b0", capsize=3)
    ax.axhline(1 / result.k, color="0.5", ls="--", lw=1, label="uniform")
    first = result.options[0] if result.options else ()
    labels = [f"{j + 1}" + (f"\n{first[j]!s:.12}" if first and all(o == first for o in result.options) else "")
              for j in x]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlabel("listed option position")
    ax.set_ylabel("mean p(option)")
    m = result.mass_estimate()
    ax.set_title(f"{result.n} items, expected value {result.aggregate.value:.2f}; format mass {m.value:.2f}",
                 fontsize=9)
    ax.legend(fontsize=7)
    return fig
