"""The model contract Protocol matches HookedModel: every member exists, with the same kind (property or method)
and the same parameter names, on both backends' models."""

import inspect

import pytest

from workbench.models import load
from workbench.models.hooked import HookedModel
from workbench.models.protocol import Model


def _members(cls):
    return {n: v for n, v in vars(cls).items() if not n.startswith("_")}


def test_every_protocol_member_is_implemented_the_same_way():
    declared = _members(Model)
    assert {"forward", "run_with_cache", "unembed", "norm_weight", "layer_module", "hf_config"} <= set(declared)
    for name, proto in declared.items():
        impl = inspect.getattr_static(HookedModel, name, None)
        if isinstance(proto, property):
            assert isinstance(impl, property), f"{name} is a property in the Protocol, not on HookedModel"
        elif callable(proto):
            assert callable(impl), name
            want = [p for p in inspect.signature(proto).parameters if p not in ("self", "kw")]
            have = inspect.signature(impl).parameters
            missing = [p for p in want if p not in have]
            assert not missing, f"HookedModel.{name} lacks parameters {missing}"


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_loaded_models_satisfy_the_protocol(backend):
    m = load("tiny-llama", backend=backend, device="cpu")
    assert isinstance(m, Model)
    for attr in ("name", "backend_name", "tokenizer", "facts"):
        assert hasattr(m, attr), attr
