"""Persona injection by system prompt and by steering, at matched strength, with the low-pole controls.

The Personality Illusion (Han et al. 2025) injects a persona with a system prompt and asks whether the
model's self-report and its behaviour move. Here the same persona is injected two ways, each at both poles:

- ``prompt:high:<i>`` / ``prompt:low:<i>``: the persona's i-th high / low system prompt (matched wording;
  :class:`steering.personas.Persona`);
- ``steer:+`` / ``steer:-``: the persona vector (mean activation difference between high- and low-prompted
  runs, :func:`steering.personas.persona_vectors`) added with ``+`` or ``-`` sign at ``layer``, each scaled so
  that its mean next-token KL from the unsteered model on neutral prompts equals that of the matching pole's
  system prompts (:func:`steering.calibration.match_strength`): steering is as strong as prompting, pole by pole.

``baseline`` is the model as deployed (template's default system prompt, no steering). The low pole and the
negative steering are the built-in controls: an effect that is a persona effect flips sign between the poles;
an effect of "any system prompt" or "any perturbation" does not.

:func:`persona_injection` returns a :class:`PersonaInjection` with the conditions, their KLs (Estimates) and the
matched operators; ``state()`` / ``from_state()`` carry it through a resumable run as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from workbench.results import Provenance
from workbench.stats import mean_estimate

from .calibration import match_strength, prompt_kls
from .operators import Add, check_positions
from .personas import Persona, load_personas, persona_vectors

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["InjectionCondition", "PersonaInjection", "persona_injection"]


@dataclass(frozen=True)
class InjectionCondition:
    """One way the persona is (or is not) imposed.

    Attributes:
        name: ``baseline``, ``prompt:high:0``, ``prompt:low:0``, ``steer:+``, ``steer:-``...
        method: ``baseline``, ``prompt`` or ``steer``.
        pole: ``high``, ``low`` or None (baseline).
        system: the system prompt (None: the template's default).
        operators: steering operators active in this condition.
        kl: mean next-token KL from the baseline on the neutral prompts (Estimate), None for the baseline.
    """

    name: str
    method: str
    pole: str | None
    system: str | None = None
    operators: tuple = ()
    kl: Any = None

    @property
    def sign(self) -> int:
        """+1 for the high pole, -1 for the low pole, 0 for the baseline."""
        return {"high": 1, "low": -1}.get(self.pole or "", 0)


@dataclass
class PersonaInjection:
    persona: Persona
    layer: int
    site: str
    vector: np.ndarray
    conditions: list[InjectionCondition]
    strength: dict
    provenance: Provenance = field(default_factory=Provenance)

    def __getitem__(self, name: str) -> InjectionCondition:
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(f"no condition {name!r}; have {[c.name for c in self.conditions]}")

    def to_dataframe(self) -> Any:
        import pandas as pd

        rows = []
        for c in self.conditions:
            add = c.operators[0] if c.operators else None
            rows.append({"condition": c.name, "method": c.method, "pole": c.pole, "system": c.system,
                         "kl": None if c.kl is None else c.kl.value, "kl_ci_low": None if c.kl is None else c.kl.ci_low,
                         "kl_ci_high": None if c.kl is None else c.kl.ci_high,
                         "steer_norm": None if add is None else abs(add.alpha), "site": None if add is None else self.site})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The persona, the steering layer and each condition's KL from the baseline (with its CI)."""
        kls = "; ".join(f"{c.name}: KL {c.kl.value:.3g} [{c.kl.ci_low:.3g}, {c.kl.ci_high:.3g}]"
                        for c in self.conditions if c.kl is not None)
        return (f"persona injection '{self.persona.name}' at {self.site}: {len(self.conditions)} conditions"
                + (f"; {kls}" if kls else ""))

    def state(self) -> dict:
        """JSON-able state: everything needed to rebuild the conditions without recomputing."""
        return {"persona": self.persona.to_dict(), "layer": self.layer, "site": self.site,
                "vector": [float(x) for x in self.vector], "strength": self.strength,
                "conditions": [{"name": c.name, "method": c.method, "pole": c.pole, "system": c.system,
                                "alpha": c.operators[0].alpha if c.operators else None,
                                "positions": c.operators[0].positions if c.operators else None,
                                "kl": None if c.kl is None else c.kl.to_dict()} for c in self.conditions],
                "provenance": self.provenance.to_dict()}

    @classmethod
    def from_state(cls, state: dict) -> "PersonaInjection":
        import torch

        from workbench.stats import Estimate

        vec = np.asarray(state["vector"], dtype=np.float32)
        conds = []
        for c in state["conditions"]:
            ops = () if c["alpha"] is None else (Add(state["site"], torch.tensor(vec), c["alpha"],
                                                     positions=c["positions"], scale="unit", label=c["name"]),)
            conds.append(InjectionCondition(c["name"], c["method"], c["pole"], c["system"], ops,
                                            None if c["kl"] is None else Estimate.from_dict(c["kl"])))
        prov = dict(state.get("provenance") or {})
        prov["sites"] = tuple(prov.get("sites", ()))
        return cls(Persona(**state["persona"]), int(state["layer"]), state["site"], vec, conds, state["strength"],
                   Provenance(**prov))


def persona_injection(model: Model, persona: Persona | str, *, layer: Any = 0.4, prompt_indices: Sequence[int] = (0,),
                      vector: Any = None, source: str = "prompt", n_questions: int = 8, n_pairs: int = 3,
                      kl_prompts: Sequence[str] | None = None, positions: Any = "all", steer: bool = True,
                      rtol: float = 0.05, seed: int = 0, progress: bool = False) -> PersonaInjection:
    """Conditions imposing ``persona`` by prompt and by steering at matched KL (see the module docstring).

    Args:
        persona: a :class:`Persona` (a user's own: high/low system prompts) or a shipped persona's name.
        layer: the steering layer: an index, a fraction of depth (0.4 = 40% of the way up), or "middle".
        prompt_indices: which of the persona's matched high/low system prompts become conditions.
        vector: a persona vector to use (a SteeringVector or a ``[d_model]`` tensor); default: built with
            :func:`steering.personas.persona_vectors` (``source``, ``n_questions``, ``n_pairs``).
        kl_prompts: neutral prompts for the KL (default: the shipped neutral prompts).
        positions: the steering position policy.
        steer: include the steering conditions (False: baseline and prompts only).
        rtol: relative tolerance of the KL match (the bisection stops within ``rtol`` of the target).
    """
    import torch

    from workbench.layers import resolve_layers

    from .vector import SteeringVector

    check_positions(positions)
    p = persona if isinstance(persona, Persona) else load_personas([persona])[0]
    (L,) = resolve_layers(model, [layer]) if not isinstance(layer, int) else (layer,)
    idx = [i % len(p.high) for i in prompt_indices]
    if not idx:
        raise ValueError("prompt_indices must name at least one of the persona's system prompts")
    from .data import neutral_prompts

    kp = list(kl_prompts) if kl_prompts is not None else neutral_prompts()
    systems = {**{f"prompt:high:{i}": p.high[i] for i in idx}, **{f"prompt:low:{i}": p.low[i] for i in idx}}
    pk = prompt_kls(model, systems, kp)
    kl_est = {k: mean_estimate(v, seed=seed, statistic="next_token_kl") for k, v in pk.items()}
    conds = [InjectionCondition("baseline", "baseline", None)]
    conds += [InjectionCondition(k, "prompt", k.split(":")[1], systems[k], (), kl_est[k]) for k in systems]
    site = f"resid_post.{L}"
    strength: dict = {"layer": L, "site": site, "positions": str(positions), "n_kl_prompts": len(kp),
                      "measure": "mean next-token KL(unsteered || condition), nats"}
    vec = np.zeros(0, dtype=np.float32)
    if steer:
        if vector is None:
            pv = persona_vectors(model, [p], [L], source=source, n_questions=n_questions, n_pairs=n_pairs, seed=seed,
                                 progress=progress)
            v = pv[p.name].vector(L)
        elif isinstance(vector, SteeringVector):
            v = vector.vector(L)
        else:
            v = torch.as_tensor(vector, dtype=torch.float32)
        vec = v.detach().float().cpu().numpy()
        for sign, pole in ((1.0, "high"), (-1.0, "low")):
            target = float(np.mean([kl_est[f"prompt:{pole}:{i}"].value for i in idx]))
            sm = match_strength(model, {p.name: torch.tensor(vec)}, kp, layer=site, target=target,
                                positions=positions, sign=sign, rtol=rtol, seed=seed, progress=progress)
            r = sm.row(p.name)
            op = sm.operator(p.name, torch.tensor(vec), sign=sign, positions=positions)
            kl = r["achieved"]  # the mean next-token KL at the matched norm, CI over the prompts
            name = "steer:+" if sign > 0 else "steer:-"
            conds.append(InjectionCondition(name, "steer", pole, None, (op,), kl))
            strength[name] = {"target_kl": target, "norm": float(r["norm"]), "multiplier": float(r["multiplier"]),
                              "achieved_kl": kl.to_dict()}
    prov = model.provenance(seed=seed, sites=(site,) if steer else (),
                            extra={"persona": p.name, "prompt_indices": idx, "source": source if vector is None else
                                   "given", "positions": str(positions)})
    return PersonaInjection(p, L, site, vec, conds, strength, prov)
