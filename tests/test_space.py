"""Parameter spaces: Float / Int / Categorical, the shorthands, tables and inference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import simgap
from simgap.space import as_space, as_table, check_table, infer_space, sample_space


def test_types_and_to_dict():
    assert simgap.Float(0, 1).to_dict() == {"type": "float", "low": 0.0, "high": 1.0, "log": False}
    assert simgap.Int(1, 4.0).to_dict() == {"type": "int", "low": 1, "high": 4, "log": False}
    assert simgap.Categorical(["a", np.int64(2)]).choices == ("a", 2)
    json.dumps({k: v.to_dict() for k, v in as_space({"a": (0, 1), "b": ["x", "y"]}).items()})


@pytest.mark.parametrize("make, match", [
    (lambda: simgap.Float(1, 0), "low must be <= high"),
    (lambda: simgap.Float(0, 1, log=True), "log=True needs low > 0"),
    (lambda: simgap.Float("a", 1), "low must be a real number"),
    (lambda: simgap.Float(0, np.inf), "high must be finite"),
    (lambda: simgap.Int(0, 1.5), "high must be an integer"),
    (lambda: simgap.Categorical([]), "choices is empty"),
    (lambda: simgap.Categorical(["a", "a"]), "distinct"),
    (lambda: simgap.Categorical("ab"), "choices must be a list"),
])
def test_type_errors_name_the_argument(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_as_space_shorthands_and_errors():
    sp = as_space({"a": (0.0, 2.0), "b": ["x", "y"], "c": simgap.Int(1, 3)})
    assert sp["a"] == simgap.Float(0.0, 2.0) and sp["b"] == simgap.Categorical(["x", "y"])
    with pytest.raises(ValueError, match=r"space\['a'\]: a tuple must be \(low, high\)"):
        as_space({"a": (0, 1, 2)})
    with pytest.raises(TypeError, match=r"space\['a'\]: expected Float"):
        as_space({"a": 3})
    with pytest.raises(TypeError, match="space must be a dict"):
        as_space([("a", (0, 1))])
    with pytest.raises(ValueError, match="space is empty"):
        as_space({})


def test_tables_in_every_form_agree():
    rows = [{"a": 0.5, "b": "x", "n": 1}, {"a": 1.5, "b": "y", "n": 3}]
    forms = [pd.DataFrame(rows), {"a": [0.5, 1.5], "b": ["x", "y"], "n": [1, 3]}, rows,
             np.array([(0.5, "x", 1), (1.5, "y", 3)], dtype=[("a", "f8"), ("b", "U1"), ("n", "i8")])]
    for f in forms:
        t = as_table(f)
        sp = infer_space(t)
        assert sp == {"a": simgap.Float(0.5, 1.5), "b": simgap.Categorical(["x", "y"]), "n": simgap.Int(1, 3)}
    with pytest.raises(ValueError, match=r"params\[1\] has keys"):
        as_table([{"a": 1}, {"b": 2}])
    with pytest.raises(ValueError, match="different lengths"):
        as_table({"a": [1, 2], "b": [1]})
    with pytest.raises(TypeError, match="params must be a pandas DataFrame"):
        as_table(3)


def test_check_table_against_space():
    sp = as_space({"a": (0.0, 1.0), "b": ["x", "y"], "n": simgap.Int(1, 3)})
    good = {"a": np.array([0.0, 1.0]), "b": np.array(["x", "y"], dtype=object), "n": np.array([1, 3])}
    out = check_table(good, sp)
    assert out["a"].dtype == np.float64 and list(out["b"]) == ["x", "y"]
    with pytest.raises(ValueError, match=r"params\['a'\] has values in \[0, 2\], outside space\['a'\]"):
        check_table({**good, "a": np.array([0.0, 2.0])}, sp)
    with pytest.raises(ValueError, match=r"params\['b'\] has values \['z'\]"):
        check_table({**good, "b": np.array(["x", "z"], dtype=object)}, sp)
    with pytest.raises(ValueError, match=r"params\['n'\] has non-integer values"):
        check_table({**good, "n": np.array([1.0, 2.5])}, sp)
    with pytest.raises(ValueError, match="params has no column 'n'"):
        check_table({"a": good["a"], "b": good["b"]}, sp)


def test_sample_space_reproducible_and_in_bounds():
    sp = {"a": simgap.Float(0.1, 10.0, log=True), "n": simgap.Int(2, 5), "c": ["u", "v"]}
    t1, t2 = sample_space(sp, 500, seed=3), sample_space(sp, 500, seed=3)
    pd.testing.assert_frame_equal(t1, t2)
    assert t1["a"].between(0.1, 10.0).all() and t1["n"].dtype == np.int64 and set(t1["n"]) == {2, 3, 4, 5}
    assert set(t1["c"]) == {"u", "v"}
    assert abs(np.median(np.log10(t1["a"]))) < 0.2  # log-uniform: median near 1


def test_two_nan_choices_are_not_distinct():
    with pytest.raises(ValueError, match="distinct"):
        simgap.Categorical([float("nan"), float("nan")])
    assert simgap.Categorical([float("nan"), 1.0]).choices[1] == 1.0


def test_simulators_check_their_space_nuisance_and_tables():
    from simgap.simulators import GaussianMixtureSimulator, ShapesSimulator

    with pytest.raises(ValueError, match=r"missing \['mean_b', 'noise', 'scale', 'weight'\]"):
        GaussianMixtureSimulator(space={"mean_a": (-3.0, 3.0)})
    with pytest.raises(ValueError, match="nuisance must be a number"):
        GaussianMixtureSimulator(nuisance="a")
    sim = GaussianMixtureSimulator()
    with pytest.raises(ValueError, match="table has no rows"):
        sim.simulate_table(pd.DataFrame({k: [] for k in sim.space}))
    with pytest.raises(ValueError, match="radius"):
        ShapesSimulator(space={"radius": (0.0, 3.0), "blur": (0.0, 1.0), "contrast": (0.2, 1.0),
                               "rotation": (0.0, 90.0), "shape": ["ellipse"]})
