"""Tests for compiler.data.datasets: the data sources named after `from`."""

import pathlib

import numpy as np
import pytest

from compiler.data import datasets
from compiler.data.datasets import DatasetError, load

HERE = pathlib.Path(".")
X64 = [("x", (64,))]
XY30 = [("x", (30,)), ("y", ())]
XY50 = [("x", (50,)), ("y", ())]


def get(name, variables, *args, base_dir=HERE, **kwargs):
    return load(name, args, kwargs, variables, base_dir)


def check_arrays(data, variables, n):
    assert list(data) == [name for name, _ in variables]
    for name, shape in variables:
        assert data[name].dtype == np.float32
        assert data[name].shape == (n, *shape)


# ---------------------------------------------------------------- built-in sources


def test_digits():
    data = get("digits", X64)
    check_arrays(data, X64, 1797)
    x = data["x"]
    assert x.min() == 0.0 and x.max() == 1.0
    assert len(np.unique(x)) == 17  # pixel values 0..16 divided by 16


def test_digits_with_labels():
    variables = [("x", (64,)), ("label", ())]
    data = get("digits", variables)
    check_arrays(data, variables, 1797)
    assert set(np.unique(data["label"])) == set(range(10))


def test_digits_binary():
    data = get("digits_binary", X64)
    check_arrays(data, X64, 1797)
    assert set(np.unique(data["x"])) == {0.0, 1.0}
    np.testing.assert_array_equal(data["x"], get("digits", X64)["x"] > 0.5)


def test_breast_cancer():
    data = get("breast_cancer", XY30)
    check_arrays(data, XY30, 569)
    np.testing.assert_allclose(data["x"].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data["x"].std(axis=0), 1, atol=1e-4)
    y = data["y"]
    assert set(np.unique(y)) == {-1.0, 1.0}
    assert (y == 1).sum() == 357 and (y == -1).sum() == 212  # benign / malignant


def test_breast_cancer_features_only():
    data = get("breast_cancer", [("x", (30,))])
    check_arrays(data, [("x", (30,))], 569)


def test_ring8():
    variables = [("x", (2,))]
    data = get("ring8", variables)
    check_arrays(data, variables, 20000)
    x = data["x"].astype(np.float64)
    radius = np.hypot(x[:, 0], x[:, 1])
    assert np.abs(radius - 2).max() < 0.2
    sector = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)).astype(int) % 8
    counts = np.bincount(sector, minlength=8)
    assert counts.min() > 2000  # eight equally weighted modes, 2500 expected each


def test_ring8_arguments():
    x = get("ring8", [("x", (2,))], n=500, std=0.1, radius=5, seed=3)["x"]
    assert x.shape == (500, 2)
    assert abs(np.hypot(x[:, 0], x[:, 1]).mean() - 5) < 0.1


def test_gaussian_scalar():
    x = get("gaussian", [("x", ())], mean=2, std=0.5, n=50000)["x"]
    assert x.shape == (50000,)
    assert abs(x.mean() - 2) < 0.02 and abs(x.std() - 0.5) < 0.02


def test_gaussian_vector_and_defaults():
    data = get("gaussian", [("z", (3,))])
    check_arrays(data, [("z", (3,))], 10000)
    np.testing.assert_allclose(data["z"].std(axis=0), 1, atol=0.05)


def test_sparse_regression():
    data = get("sparse_regression", XY50)
    check_arrays(data, XY50, 200)
    X, y, w = datasets.sparse_regression_truth(200, 50, 5, 0.1, 0)
    np.testing.assert_allclose(data["x"], X, rtol=1e-6)
    np.testing.assert_allclose(data["y"], y, rtol=1e-5)
    nonzero = w[w != 0]
    assert nonzero.size == 5
    assert np.all((np.abs(nonzero) >= 1) & (np.abs(nonzero) <= 2))
    assert abs(np.std(y - X @ w) - 0.1) < 0.03


def test_sparse_regression_arguments():
    variables = [("x", (20,)), ("y", ())]
    data = get("sparse_regression", variables, n=30, d=20, k=20, noise=0, seed=4)
    check_arrays(data, variables, 30)
    X, y, w = datasets.sparse_regression_truth(30, 20, 20, 0.0, 4)
    assert np.count_nonzero(w) == 20
    np.testing.assert_allclose(X @ w, y)


def test_piecewise_regression():
    data = get("piecewise_regression", XY50)
    check_arrays(data, XY50, 200)
    X, y, w = datasets.piecewise_regression_truth(200, 50, 4, 0.1, 0)
    np.testing.assert_allclose(data["y"], y, rtol=1e-5)
    assert np.count_nonzero(np.diff(w)) == 3  # four runs, neighbours differ
    assert set(np.unique(w)) <= {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_piecewise_regression_single_segment():
    _, _, w = datasets.piecewise_regression_truth(10, 8, 1, 0.0, 0)
    assert np.all(w == w[0])


RANDOM = [
    ("ring8", [("x", (2,))], {"n": 100}),
    ("gaussian", [("x", (4,))], {"n": 100}),
    ("sparse_regression", XY50, {}),
    ("piecewise_regression", XY50, {}),
]


@pytest.mark.parametrize("name, variables, kwargs", RANDOM)
def test_deterministic_by_seed(name, variables, kwargs):
    first = get(name, variables, **kwargs)
    again = get(name, variables, **kwargs)
    zero = get(name, variables, seed=0, **kwargs)
    other = get(name, variables, seed=1, **kwargs)
    for var, _ in variables:
        np.testing.assert_array_equal(first[var], again[var])
        np.testing.assert_array_equal(first[var], zero[var])
        assert not np.array_equal(first[var], other[var])


def test_integral_floats_and_positional_arguments():
    a = get("gaussian", [("x", ())], 1.0, 2.0, 300.0, 7.0)["x"]
    b = get("gaussian", [("x", ())], mean=1, std=2, n=300, seed=7)["x"]
    np.testing.assert_array_equal(a, b)


def test_every_source_is_registered():
    assert set(datasets.SOURCES) == {
        "digits", "digits_binary", "breast_cancer", "ring8", "gaussian",
        "sparse_regression", "piecewise_regression", "npz", "csv",
    }


# ---------------------------------------------------------------- files


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3, 2)), rng.standard_normal(7)
    np.savez(tmp_path / "d.npz", x=x, y=y, unused=np.zeros(2))
    variables = [("x", (3, 2)), ("y", ())]
    data = get("npz", variables, "d.npz", base_dir=tmp_path)
    check_arrays(data, variables, 7)
    np.testing.assert_allclose(data["x"], x, rtol=1e-6)
    np.testing.assert_allclose(data["y"], y, rtol=1e-6)


def test_npz_absolute_path_and_keyword(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(4))
    data = get("npz", [("x", ())], path=str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(data["x"], [0, 1, 2, 3])


@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path, header):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal(5)
    lines = ["a,b,c,label"] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in np.column_stack([x, y])]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n\n")
    variables = [("x", (3,)), ("y", ())]
    data = get("csv", variables, "d.csv", base_dir=tmp_path)
    check_arrays(data, variables, 5)
    np.testing.assert_allclose(data["x"], x, rtol=1e-6)
    np.testing.assert_allclose(data["y"], y, rtol=1e-6)


def test_csv_multidimensional_variable(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,3,4,5\n6,7,8,9,10\n")
    data = get("csv", [("m", (2, 2)), ("t", ())], "d.csv", base_dir=tmp_path)
    np.testing.assert_array_equal(data["m"], [[[1, 2], [3, 4]], [[6, 7], [8, 9]]])
    np.testing.assert_array_equal(data["t"], [5, 10])


def test_csv_byte_order_mark_is_not_a_header(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbf1,2\n3,4\n")
    data = get("csv", [("x", (2,))], "d.csv", base_dir=tmp_path)
    np.testing.assert_array_equal(data["x"], [[1, 2], [3, 4]])


# ---------------------------------------------------------------- errors


def raises(match, name, variables, *args, base_dir=HERE, **kwargs):
    with pytest.raises(DatasetError, match=match):
        get(name, variables, *args, base_dir=base_dir, **kwargs)


def test_unknown_source_lists_known_ones():
    with pytest.raises(DatasetError) as info:
        get("digit", X64)
    message = str(info.value)
    assert "unknown data source 'digit'" in message
    assert "did you mean 'digits'" in message
    for name in datasets.SOURCES:
        assert name in message


ARGUMENT_ERRORS = [
    ("gaussian", [("x", ())], (), {"mena": 0},
     r"no argument 'mena' \(did you mean 'mean'\?\); usage: gaussian\(mean=0.0, std=1.0, n=10000"),
    ("gaussian", [("x", ())], (1, 2, 3, 4, 5), {}, "at most 4 positional"),
    ("gaussian", [("x", ())], (1,), {"mean": 2}, "'mean' given twice"),
    ("digits", X64, (3,), {}, "at most 0 positional"),
    ("digits", X64, (), {"n": 3}, "digits has no argument 'n'"),
    ("npz", [("x", ())], (), {}, "missing argument 'path'"),
    ("npz", [("x", ())], (3,), {}, "'path' must be a string"),
    ("gaussian", [("x", ())], (), {"std": "a"}, "'std' must be a number"),
    ("gaussian", [("x", ())], (), {"mean": float("nan")}, "'mean' must be finite"),
    ("gaussian", [("x", ())], (), {"n": 2.5}, "'n' must be an integer"),
    ("ring8", [("x", (2,))], (), {"seed": True}, "'seed' must be a number"),
]


@pytest.mark.parametrize("name, variables, args, kwargs, match", ARGUMENT_ERRORS)
def test_argument_errors(name, variables, args, kwargs, match):
    raises(match, name, variables, *args, **kwargs)


VALUE_ERRORS = [
    ("gaussian", [("x", ())], {"n": 0}, "n must be positive"),
    ("gaussian", [("x", ())], {"std": 0}, "std must be positive"),
    ("ring8", [("x", (2,))], {"n": -5}, "n must be positive"),
    ("ring8", [("x", (2,))], {"std": -1}, "std must be positive"),
    ("ring8", [("x", (2,))], {"radius": 0}, "radius must be positive"),
    ("ring8", [("x", (2,))], {"seed": -1}, "seed must be >= 0"),
    ("sparse_regression", XY50, {"k": 60}, "k must be between 0 and d=50, got 60"),
    ("sparse_regression", XY50, {"n": 0}, "n must be positive"),
    ("sparse_regression", XY50, {"noise": -0.1}, "noise must be >= 0"),
    ("piecewise_regression", XY50, {"segments": 51}, "segments must be between 1 and d=50"),
    ("piecewise_regression", XY50, {"segments": 0}, "segments must be between 1"),
]


@pytest.mark.parametrize("name, variables, kwargs, match", VALUE_ERRORS)
def test_value_errors(name, variables, kwargs, match):
    raises(f"^{name}: {match}", name, variables, **kwargs)


RECORD_ERRORS = [
    ("digits", [("x", (30,))], {},
     r"^data source digits provides records of real\[64\] \(pixels\), "
     r"optionally followed by real \(digit label\), but the program declares x : real\[30\]$"),
    ("digits", [("x", (64,)), ("y", ()), ("z", ())], {}, r"declares x : real\[64\], y : real, z : real"),
    ("digits_binary", [("x", (8, 8))], {}, r"real\[64\].*declares x : real\[8, 8\]"),
    ("breast_cancer", [("x", (30,)), ("y", (2,))], {}, r"declares x : real\[30\], y : real\[2\]"),
    ("breast_cancer", [("y", ())], {}, r"real\[30\] \(features\)"),
    ("ring8", [("x", (3,))], {}, r"ring8 provides records of real\[2\]"),
    ("ring8", [], {}, "declares no data variables"),
    ("gaussian", [("x", ()), ("y", ())], {}, "single variable of any shape"),
    ("sparse_regression", [("x", (30,)), ("y", ())], {}, r"real\[50\] \(features\), real \(target\)"),
    ("sparse_regression", [("x", (50,))], {}, r"declares x : real\[50\]$"),
    ("piecewise_regression", XY50, {"d": 10}, r"real\[10\] \(features\)"),
]


@pytest.mark.parametrize("name, variables, kwargs, match", RECORD_ERRORS)
def test_record_mismatch(name, variables, kwargs, match):
    raises(match, name, variables, **kwargs)


def test_missing_files(tmp_path):
    raises("npz: file not found: .*nope.npz", "npz", [("x", ())], "nope.npz", base_dir=tmp_path)
    raises("csv: file not found: .*nope.csv", "csv", [("x", ())], "nope.csv", base_dir=tmp_path)
    raises("csv: file not found", "csv", [("x", ())], ".", base_dir=tmp_path)


def test_npz_unreadable(tmp_path):
    (tmp_path / "junk.npz").write_text("not an archive")
    raises("cannot read .*junk.npz as an .npz archive", "npz", [("x", ())], "junk.npz",
           base_dir=tmp_path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    raises("single array", "npz", [("x", ())], "single.npy", base_dir=tmp_path)


def test_npz_missing_variable(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), z=np.zeros(4))
    raises(r"has no array 'y' \(arrays present: x, z\)", "npz", [("x", (2,)), ("y", ())], "d.npz",
           base_dir=tmp_path)


@pytest.mark.parametrize("array, shape, match", [
    (np.zeros((4, 3)), (2,), r"shape \(4, 3\), expected \(n, 2\) for x : real\[2\]"),
    (np.zeros((4, 1)), (), r"shape \(4, 1\), expected \(n,\) for x : real$"),
    (np.float64(1.0), (), r"shape \(\), expected \(n,\)"),
    (np.array(["a", "b"]), (), "not numeric"),
])
def test_npz_wrong_shape_or_type(tmp_path, array, shape, match):
    np.savez(tmp_path / "d.npz", x=array)
    raises(match, "npz", [("x", shape)], "d.npz", base_dir=tmp_path)


def test_npz_inconsistent_or_empty(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.zeros(5))
    raises(r"different numbers of examples \(x: 4, y: 5\)", "npz", [("x", (2,)), ("y", ())],
           "d.npz", base_dir=tmp_path)
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 2)))
    raises("no examples", "npz", [("x", (2,))], "e.npz", base_dir=tmp_path)


@pytest.mark.parametrize("text, match", [
    ("1,2,3\n4,5\n",
     r"line 2 has 2 column\(s\), but the program declares x : real\[2\], y : real = 3"),
    ("1,2\n3,4\n", r"line 1 has 2 column\(s\)"),
    ("x0,x1,y\n1,2,3\n4,oops,6\n", "line 3 column 2: 'oops' is not a decimal number"),
    ("1,oops,3\n4,5,6\n", "line 1 column 2: 'oops' is not a decimal number"),   # not silently a header
    ("1_000,2,3\n", "line 1 column 1: '1_000' is not a decimal number"),
    ("1,nan,3\n", "'nan' is not a decimal number"),
    ("1,2,inf\n", "'inf' is not a decimal number"),
    ("1,2,1e39\n", "line 1 column 3: 1e39 is infinite in float32"),
    ("1,2,3\n4,5,6,7\n", r"line 2 has 4 column\(s\)"),
    ("x0,x1,y\n", "no data rows"),
    ("", "no data rows"),
])
def test_csv_errors(tmp_path, text, match):
    (tmp_path / "d.csv").write_text(text)
    raises(match, "csv", [("x", (2,)), ("y", ())], "d.csv", base_dir=tmp_path)


@pytest.mark.parametrize("array, match", [
    (np.array([[1 + 2j, 0]]), "is complex"),
    (np.array([[1.0, np.nan]]), r"entry \[0, 1\] = nan is not a number"),
    (np.array([[np.inf, 0.0]]), r"entry \[0, 0\] = inf is infinite in float32"),
    (np.array([[1e39, 0.0]]), "is infinite in float32"),
])
def test_npz_values_are_real_and_finite(tmp_path, array, match):
    np.savez(tmp_path / "d.npz", x=array)
    raises(match, "npz", [("x", (2,))], "d.npz", base_dir=tmp_path)


def test_file_errors_name_the_resolved_path(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "d.csv").write_text("1,nan\n")
    with pytest.raises(DatasetError) as e:
        load("csv", ["../d.csv"], {}, [("x", (2,))], tmp_path / "sub")
    assert str(tmp_path.resolve() / "d.csv") in str(e.value) and ".." not in str(e.value)


def test_csv_not_text(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    raises("csv: ", "csv", [("x", ())], "d.csv", base_dir=tmp_path)
