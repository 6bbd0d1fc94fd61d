import pytest

from steering.layer_matching import LayerError, resolve_layers


def test_specs_resolve_to_sorted_distinct_layers():
    assert resolve_layers(30) == list(range(30))
    assert resolve_layers(30, "all") == list(range(30))
    assert resolve_layers(30, -1) == [29]
    assert resolve_layers(30, 0.5) == [14]  # round(0.5 * 29)
    assert resolve_layers(30, 0.0) == [0] and resolve_layers(30, 1.0) == [29]
    assert resolve_layers(30, "middle") == [15]
    assert resolve_layers(30, [12, -1, 3, 12]) == [3, 12, 29]
    assert resolve_layers(30, range(4, 10, 2)) == [4, 6, 8]
    assert resolve_layers(30, slice(-3, None)) == [27, 28, 29]


def test_model_layers(tiny_model):
    m = tiny_model("llama")
    assert resolve_layers(m) == list(range(m.n_layers))


@pytest.mark.parametrize("spec,msg", [
    (30, r"layer 30 is out of range for a 30-layer model \(30 layers: 0..29, or -30..-1\)"),
    (-31, r"layer -31 is out of range"),
    (1.5, r"fractional layer must be in \[0, 1\]"),
    ("top", r"unknown layer spec 'top'"),
    (True, r"cannot be a bool"),
    ([], r"selects no layers"),
])
def test_bad_specs_name_the_problem(spec, msg):
    with pytest.raises(LayerError, match=msg):
        resolve_layers(30, spec)
