import pytest

from costaware.economics import CostMatrix
from training.variants import (
    VariantError,
    VariantSpec,
    parse_variant,
    reference_variants,
    variant_from_cost_matrix,
    weights_from_cost_matrix,
)


def test_weights_from_the_reference_qaly_values():
    costs = CostMatrix(tp=-35280.0, fp=-1287.67, tn=0.0, fn=-252000.0)
    fn_cost, fp_cost = weights_from_cost_matrix(costs)
    # fn_cost = v_tp - v_fn, fp_cost = v_tn - v_fp
    assert fn_cost == pytest.approx(252000 - 35280)
    assert fp_cost == pytest.approx(1287.67)


def test_weights_ignore_a_common_offset():
    # adding the same amount to every outcome changes no decision, nor the weights
    a = weights_from_cost_matrix(CostMatrix(tp=-3, fp=-1, tn=0, fn=-10))
    b = weights_from_cost_matrix(CostMatrix(tp=97, fp=99, tn=100, fn=90))
    assert a == b == (7.0, 1.0)


def test_variant_from_cost_matrix_is_custom_and_keeps_the_matrix():
    costs = CostMatrix(tp=-3, fp=-1, tn=0, fn=-10)
    spec = variant_from_cost_matrix("m", costs, epochs=7)
    assert (spec.loss, spec.fn_cost, spec.fp_cost, spec.epochs) == ("custom", 7.0, 1.0, 7)
    assert spec.cost_matrix == costs


def test_a_matrix_rewarding_mistakes_is_refused():
    with pytest.raises(VariantError, match=r"fn_cost = v_tp - v_fn = -5"):
        weights_from_cost_matrix(CostMatrix(tp=-10, fp=-1, tn=0, fn=-5))


def test_reference_variants():
    specs = {s.name: (s.loss, s.fn_cost, s.fp_cost, s.epochs, s.seed) for s in reference_variants()}
    assert specs == {
        "builtin": ("builtin", 1.0, 1.0, 50, 1),
        "custom-5to1": ("custom", 5.0, 1.0, 50, 1),
        "medical": ("custom", 200.0, 1.0, 50, 1),
    }


def test_parse_weights_and_overrides():
    spec = parse_variant("name=x,fn_cost=3,fp_cost=0.5,epochs=9", epochs=50, seed=4)
    assert (spec.name, spec.loss, spec.fn_cost, spec.fp_cost) == ("x", "custom", 3.0, 0.5)
    assert (spec.epochs, spec.seed) == (9, 4)
    assert parse_variant("name=b").loss == "builtin"


def test_parse_cost_matrix():
    spec = parse_variant("name=q,tp=-35280,fp=-1287.67,tn=0,fn=-252000")
    assert spec.fn_cost == pytest.approx(216720)
    assert spec.fp_cost == pytest.approx(1287.67)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss=custom", "name=... is required"),
        ("name=a,fn_cost=x", "fn_cost='x' is not a number"),
        ("name=a,epochs=1.5", "epochs='1.5' is not an integer"),
        ("name=a,colour=red", "unknown field 'colour'"),
        ("name=a,tp=1,fp=0", "cost matrix needs tp, fp, tn and fn; tn missing"),
        ("name=a,loss=builtin,fn_cost=5", "fn_cost/fp_cost need loss=custom"),
        ("name=a,loss=focal", "loss 'focal' must be 'builtin' or 'custom'"),
        ("name=a,fn_cost=-1,fp_cost=1", "fn_cost -1 must be a finite number >= 0"),
        ("name=a b", "variant name 'a b'"),
        ("name=a,epochs=0", "epochs must be at least 1"),
        ("name=a,fn_cost=nan,fp_cost=1", "is not a finite number"),
        ("name", "'name' is not key=value"),
    ],
)
def test_parse_errors_name_the_field(text, message):
    with pytest.raises(VariantError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_variant(text)


def test_spec_validates_directly():
    with pytest.raises(VariantError, match="both 0"):
        VariantSpec("z", loss="custom", fn_cost=0, fp_cost=0)
