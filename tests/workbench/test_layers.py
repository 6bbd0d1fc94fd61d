"""workbench.layers: every layer spec against hand-computed indices, and clear errors."""

import numpy as np
import pytest

from workbench.layers import LayerError, fraction_of, resolve_layer, resolve_layers


def test_specs_resolve_to_sorted_distinct_layers():
    assert resolve_layers(30) == list(range(30))
    assert resolve_layers(30, "all") == list(range(30))
    assert resolve_layers(30, -1) == [29]
    # a fraction names the layer whose span [L/n, (L+1)/n) contains it: floor(0.5 * 30) = 15, the same as "middle"
    assert resolve_layers(30, 0.5) == [15] == resolve_layers(30, "middle")
    assert resolve_layers(30, 0.0) == [0] and resolve_layers(30, 1.0) == [29]
    assert resolve_layers(30, "middle") == [15]
    assert resolve_layers(30, [12, -1, 3, 12]) == [3, 12, 29]
    assert resolve_layers(30, range(4, 10, 2)) == [4, 6, 8]
    assert resolve_layers(30, slice(-3, None)) == [27, 28, 29]


def test_fractions_follow_the_documented_rounding_rule():
    # the SmolLM2 (30-layer) defaults the built-in experiments used as integers, written as fractions
    assert resolve_layers(30, 0.4) == [12]
    assert resolve_layers(30, [0.2, 0.3, 0.4, 0.5, 0.6]) == [6, 9, 12, 15, 18]
    assert resolve_layers(30, [round(0.1 * i, 1) for i in range(11)]) == list(range(0, 30, 3)) + [29]
    # 0.1 * 3 in binary floating point is 0.30000000000000004 and 0.3 * 30 is 8.999999999999998 in some orders:
    # the tolerance keeps them at layer 9
    assert fraction_of(0.1 * 3, 30) == 9 and fraction_of(0.3, 30) == 9
    # the same fractions on small models: floor(f * n), the last layer for 1.0
    assert resolve_layers(2, [0.4, 0.5, 1.0]) == [0, 1]
    assert resolve_layers(4, 0.4) == [1] and resolve_layers(4, 0.75) == [3] and resolve_layers(4, 0.74) == [2]
    for n in (1, 2, 3, 7, 12, 30, 80):  # every fraction in [0, 1] names a layer of every model
        got = [fraction_of(f, n) for f in np.linspace(0, 1, 101)]
        assert min(got) == 0 and max(got) == n - 1 and got == sorted(got)
        assert resolve_layers(n, 0.5) == resolve_layers(n, "middle") == [n // 2]


def test_named_and_slice_specs():
    assert resolve_layers(30, "every:3") == list(range(0, 30, 3))
    assert resolve_layers(30, ["every:10", "last"]) == [0, 10, 20, 29]
    assert resolve_layers(30, "first") == [0] and resolve_layers(30, "final") == [29]
    assert resolve_layers(30, "-4:") == [26, 27, 28, 29] and resolve_layers(30, "2:8:3") == [2, 5]
    assert resolve_layers(30, "7") == [7]
    assert resolve_layers(30, np.int64(4)) == [4] and resolve_layers(30, np.float64(0.5)) == [15]
    assert resolve_layer(30, 0.4) == 12 and resolve_layer(30, "middle") == 15


def test_model_layers(tiny_model):
    m = tiny_model("llama")
    assert resolve_layers(m) == list(range(m.n_layers))
    assert resolve_layers(m, 0.4) == [int(0.4 * m.n_layers)]
    with pytest.raises(LayerError, match=f"out of range for {m.name}"):
        resolve_layers(m, 12)


@pytest.mark.parametrize("spec,msg", [
    (30, r"layer 30 is out of range for a 30-layer model \(30 layers: 0..29, or -30..-1\)"),
    (-31, r"layer -31 is out of range"),
    (1.5, r"fractional layer must be in \[0, 1\]"),
    (-0.5, r"fractional layer must be in \[0, 1\]"),
    ("top", r"unknown layer spec 'top'"),
    ("every:0", r"'every:K' needs an integer K >= 1"),
    ("1:x", r"is not a slice"),
    (True, r"cannot be a bool"),
    ([], r"selects no layers"),
    ("40:", r"selects no layers"),
    ({"a": 1}.keys().__class__, r"unknown layer spec"),
])
def test_bad_specs_name_the_problem(spec, msg):
    with pytest.raises(LayerError, match=msg):
        resolve_layers(30, spec)


def test_one_layer_where_one_is_needed():
    with pytest.raises(LayerError, match=r"names 2 layers \(\[3, 4\]\); one layer is needed"):
        resolve_layer(30, [3, 4])


def test_check_spec_refuses_what_no_model_takes():
    from workbench.layers import check_spec

    for ok in (3, -1, 0.4, "middle", "every:3", "-4:", ["all"], [0.2, 12, "last"]):
        check_spec(ok)  # integers are checked once the model's depth is known
    for bad, msg in ((2.5, r"must be in \[0, 1\]"), ("top", "unknown layer spec 'top'"), (["every:0"], "K >= 1"),
                     (True, "cannot be a bool")):
        with pytest.raises(LayerError, match=msg):
            check_spec(bad)
