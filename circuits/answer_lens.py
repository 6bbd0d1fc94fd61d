"""The logit lens on a choice between two answers: at which depth does a preference appear?

For each prompt, the residual stream at its last token is read at every stage (the embedding, then
each layer's ``resid_post``) through the final norm and the unembedding (the logit lens,
nostalgebraist 2020), and the difference between two answer tokens' logits is kept:
``lens_l = unembed(LN_f(h_l))[a] - unembed(LN_f(h_l))[b]``. The last stage equals the model's own
logit difference (checked). Averaged over prompts with a bootstrap CI per stage, it shows where a
preference, e.g. for the stereotyped answer of a BBQ item, is written into the residual stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from workbench.results import Provenance, data_hash
from workbench.stats import Estimate, bootstrap

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["AnswerLensResult", "answer_lens", "plot_answer_lens"]


@dataclass(frozen=True, eq=False)
class AnswerLensResult:
    """``values[stage, prompt]``: the lens's logit difference (answer a minus answer b) at the last token."""

    stages: tuple[str, ...]
    values: np.ndarray
    final: np.ndarray          # [prompt] the model's own logit difference
    label: str = "logit diff"
    seed: int = 0
    provenance: Provenance = field(default_factory=Provenance)

    def per_stage(self) -> list[Estimate]:
        """Mean over prompts per stage with a bootstrap CI."""
        return [bootstrap(v, np.mean, seed=self.seed) for v in self.values]

    def first_stage_excluding_zero(self) -> str | None:
        """The first stage from which the CI of the mean stays on the final value's side of 0 through the output."""
        ests = self.per_stage()
        sign = np.sign(ests[-1].value)
        ok = [(e.ci_low > 0) if sign > 0 else (e.ci_high < 0) for e in ests]
        if not ok[-1]:
            return None
        i = len(ok) - 1
        while i > 0 and ok[i - 1]:
            i -= 1
        return self.stages[i]

    def to_dataframe(self) -> Any:
        import pandas as pd

        ests = self.per_stage()
        return pd.DataFrame({"stage": list(self.stages), "mean": [e.value for e in ests],
                             "ci_low": [e.ci_low for e in ests], "ci_high": [e.ci_high for e in ests],
                             "n_prompts": self.values.shape[1]})

    def summary(self) -> str:
        """Where the lens's answer preference is settled, and the model's own final preference."""
        first = self.first_stage_excluding_zero()
        fin = self.per_stage()[-1]
        where = (f"the CI excludes 0 on the final side from stage {first} on" if first is not None
                 else "the last stage's CI does not exclude 0")
        return (f"answer lens ({self.label}) over {self.values.shape[1]} prompts and {len(self.stages)} stages: "
                f"last stage {fin.value:.3g} [{fin.ci_low:.3g}, {fin.ci_high:.3g}]; {where}; model's own mean "
                f"{float(np.mean(self.final)):.3g}")


@torch.inference_mode()
def answer_lens(model: Model, prompts: Sequence[Any], a_ids: Sequence[int], b_ids: Sequence[int], *,
                label: str = "logit diff", seed: int = 0, batch_size: int = 8, **tokenize_kw: Any) -> AnswerLensResult:
    """The lens's ``logit[a] - logit[b]`` at each prompt's last token, per stage (see the module docstring)."""
    from workbench.sites import Site

    prompts = list(prompts)
    if len(prompts) != len(a_ids) or len(prompts) != len(b_ids):
        raise ValueError(f"{len(prompts)} prompts need as many a_ids and b_ids; got {len(a_ids)}, {len(b_ids)}")
    sites = [Site("resid_pre", 0)] + [Site("resid_post", L) for L in range(model.n_layers)]
    vals = np.zeros((len(sites), len(prompts)))
    final = np.zeros(len(prompts))
    for s in range(0, len(prompts), batch_size):
        idx = list(range(s, min(len(prompts), s + batch_size)))
        logits, cache = model.run_with_cache([prompts[i] for i in idx], sites, positions="last", logits="last",
                                             **tokenize_kw)
        a = torch.tensor([a_ids[i] for i in idx])
        b = torch.tensor([b_ids[i] for i in idx])
        rows = torch.arange(len(idx))
        for k, site in enumerate(sites):
            lg = model.unembed(cache[site]).float().cpu()
            vals[k, idx] = (lg[rows, a] - lg[rows, b]).numpy()
        lf = logits.float().cpu()
        final[idx] = (lf[rows, a] - lf[rows, b]).numpy()
    prov = model.provenance(data_hash=data_hash([str(p) for p in prompts], list(a_ids), list(b_ids)), seed=seed,
                            sites=tuple(s.name for s in sites), extra={"method": "answer_lens"})
    return AnswerLensResult(("embed",) + tuple(str(L) for L in range(model.n_layers)), vals, final, label, seed, prov)


def plot_answer_lens(result: AnswerLensResult) -> Any:
    """Mean lens logit difference per stage with its CI band; the model's output at the right."""
    from matplotlib.figure import Figure

    df = result.to_dataframe()
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(df))
    ax.plot(x, df["mean"], "-o", ms=3, color="C3")
    ax.fill_between(x, df.ci_low, df.ci_high, color="C3", alpha=0.15)
    ax.axhline(0, color="0.5", ls="--", lw=0.8)
    step = max(1, len(x) // 10)
    ax.set_xticks(x[::step], list(df.stage)[::step])
    ax.set_xlabel("stage (embedding, then layer)")
    ax.set_ylabel(f"{result.label} (95% CI)")
    ax.set_title(f"logit lens over {result.values.shape[1]} prompts", fontsize=10)
    ax.grid(alpha=0.25)
    return fig
