"""Data sets named after `from` in a `data` declaration (SPEC section 2).

Each entry of SOURCES is a loader ``f(variables, base_dir, /, ARG=DEFAULT, ...)``:
the two positional-only parameters receive the program's data variables
(``[(name, per-example shape), ...]`` in declaration order) and the directory
that relative paths are resolved against; the remaining parameters, with
their ``int``/``float``/``str`` annotations, are the source's arguments as
written in the program. A loader returns float32 arrays keyed by variable
name, each of shape ``(n, *shape)``.
"""

import csv as _csv
import difflib
import functools
import inspect
import math
import numbers
import pathlib
import re
import zipfile

import numpy as np


class DatasetError(Exception):
    """One of the program's input files (its data, the author's Python nets) cannot be
    used. Message only; the caller attaches source location."""


def load(name, args, kwargs, variables, base_dir):
    """Load data source `name` called with `args`/`kwargs` for the declared `variables`."""
    loader = SOURCES.get(name)
    if loader is None:
        raise DatasetError(
            f"unknown data source '{name}'{_suggest(name, SOURCES)}; "
            f"known sources: {', '.join(sorted(SOURCES))}"
        )
    bound = _bind(name, loader, tuple(args), dict(kwargs))
    variables = [(var, tuple(shape)) for var, shape in variables]
    return loader(variables, pathlib.Path(base_dir), **bound)


def estimate(name, args, kwargs, variables, base_dir):
    """(examples, bytes) a source will hold once loaded, known before loading it: `n` for the
    generated sets (float64 while generated), the file's size for npz and csv (None examples:
    unknown until read), nothing for the small built-in sets. Errors are left to `load`."""
    loader = SOURCES.get(name)
    try:
        bound = _bind(name, loader, tuple(args), dict(kwargs)) if loader else {}
    except DatasetError:
        return None, 0
    width = sum(math.prod(shape) for _, shape in variables) or 1
    if "path" in bound:
        full = pathlib.Path(base_dir) / pathlib.Path(bound["path"]).expanduser()
        return None, 2 * full.stat().st_size if full.is_file() else 0
    if "n" in bound:
        width = max(width, bound.get("d", 0) + 1)
        return bound["n"], 12 * bound["n"] * width
    return None, 0


# ---------------------------------------------------------------- arguments


def _suggest(word, choices):
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _usage(name, params):
    parts = [p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params]
    return f"{name}({', '.join(parts)})"


def _bind(name, loader, args, kwargs):
    """Match the program's arguments to the loader's signature, checking their types."""
    params = [
        p for p in inspect.signature(loader).parameters.values()
        if p.kind is not p.POSITIONAL_ONLY
    ]
    usage = _usage(name, params)
    names = [p.name for p in params]
    if len(args) > len(params):
        raise DatasetError(
            f"{name} takes at most {len(params)} positional argument(s), "
            f"got {len(args)}; usage: {usage}"
        )
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise DatasetError(
                f"{name} has no argument '{key}'{_suggest(key, names)}; usage: {usage}"
            )
        if key in values:
            raise DatasetError(f"{name}: argument '{key}' given twice; usage: {usage}")
        values[key] = value
    for p in params:
        if p.name not in values:
            if p.default is p.empty:
                raise DatasetError(f"{name}: missing argument '{p.name}'; usage: {usage}")
            values[p.name] = p.default
        values[p.name] = _coerce(name, p.name, values[p.name], p.annotation)
    return values


def _coerce(source, arg, value, kind):
    where = f"{source}: argument '{arg}'"
    if kind is str:
        if not isinstance(value, str):
            raise DatasetError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DatasetError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DatasetError(f"{where} must be finite, got {value!r}")
    if kind is int:
        if value != int(value):
            raise DatasetError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _check(source, ok, message):
    if not ok:
        raise DatasetError(f"{source}: {message}")


def _check_seed(source, seed):
    _check(source, seed >= 0, f"seed must be >= 0, got {seed}")


# ---------------------------------------------------------------- records


def _type(shape):
    return "real" if not shape else f"real[{', '.join(map(str, shape))}]"


def _declared(variables):
    if not variables:
        return "no data variables"
    return ", ".join(f"{name} : {_type(shape)}" for name, shape in variables)


def _assign(source, variables, columns, optional=0):
    """Bind the declared variables to the source's record `columns`.

    `columns` is a list of ``(array, description)``; the last `optional` of
    them may be left undeclared.
    """
    shapes = [array.shape[1:] for array, _ in columns]
    declared = [shape for _, shape in variables]
    required = len(columns) - optional
    if not required <= len(declared) <= len(columns) or declared != shapes[: len(declared)]:
        parts = [f"{_type(s)} ({what})" for s, (_, what) in zip(shapes, columns)]
        provides = ", ".join(parts[:required])
        if optional:
            provides += ", optionally followed by " + ", ".join(parts[required:])
        raise DatasetError(
            f"data source {source} provides records of {provides}, "
            f"but the program declares {_declared(variables)}"
        )
    return {
        name: np.asarray(array, dtype=np.float32)
        for (name, _), (array, _) in zip(variables, columns)
    }


# ---------------------------------------------------------------- built-in data


@functools.cache
def _sklearn(which):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{which}")()
    return bunch.data, bunch.target


def digits(variables, base_dir, /):
    """sklearn 8x8 digits: 1797 x 64 pixels in [0, 1], optional digit label."""
    pixels, label = _sklearn("digits")
    columns = [(pixels / 16.0, "pixels"), (label, "digit label")]
    return _assign("digits", variables, columns, optional=1)


def digits_binary(variables, base_dir, /):
    """The digits thresholded at 0.5: pixels in {0, 1}, optional digit label."""
    pixels, label = _sklearn("digits")
    columns = [(pixels / 16.0 > 0.5, "pixels"), (label, "digit label")]
    return _assign("digits_binary", variables, columns, optional=1)


def breast_cancer(variables, base_dir, /):
    """569 x 30 standardised features, optional label (+1 benign, -1 malignant)."""
    features, target = _sklearn("breast_cancer")
    x = (features - features.mean(axis=0)) / features.std(axis=0)
    y = np.where(target == 1, 1.0, -1.0)  # sklearn: 1 = benign, 0 = malignant
    return _assign("breast_cancer", variables, [(x, "features"), (y, "label ±1")], optional=1)


def ring8(
    variables, base_dir, /, n: int = 20000, std: float = 0.02, radius: float = 2.0, seed: int = 0
):
    """Equal mixture of 8 Gaussians centred on a circle of the given radius."""
    _check("ring8", n > 0, f"n must be positive, got {n}")
    _check("ring8", std > 0, f"std must be positive, got {std}")
    _check("ring8", radius > 0, f"radius must be positive, got {radius}")
    _check_seed("ring8", seed)
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * rng.integers(0, 8, size=n) / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = centres + std * rng.standard_normal((n, 2))
    return _assign("ring8", variables, [(x, "point in the plane")])


def gaussian(
    variables, base_dir, /, mean: float = 0.0, std: float = 1.0, n: int = 10000, seed: int = 0
):
    """n iid N(mean, std^2) draws shaped like the single declared variable."""
    _check("gaussian", n > 0, f"n must be positive, got {n}")
    _check("gaussian", std > 0, f"std must be positive, got {std}")
    if len(variables) != 1:
        raise DatasetError(
            "data source gaussian provides a single variable of any shape, "
            f"but the program declares {_declared(variables)}"
        )
    _check_seed("gaussian", seed)
    (name, shape), = variables
    rng = np.random.default_rng(seed)
    return {name: (mean + std * rng.standard_normal((n, *shape))).astype(np.float32)}


def sparse_regression_truth(n, d, k, noise, seed):
    """Return (X, y, w) with X iid N(0, 1) of shape (n, d), y = X w + noise * N(0, 1).

    w has k nonzero entries at random positions, each ±(1 + U[0, 1]).
    """
    rng = np.random.default_rng(seed)
    w = np.zeros(d)
    support = rng.choice(d, size=k, replace=False)
    w[support] = rng.choice([-1.0, 1.0], size=k) * (1 + rng.uniform(size=k))
    return _linear(rng, n, w, noise)


def piecewise_regression_truth(n, d, segments, noise, seed):
    """Return (X, y, w) as sparse_regression_truth, w piecewise constant in `segments` runs.

    Runs start at random breakpoints; their levels are drawn from
    {-2, -1, 0, 1, 2} so that neighbouring runs always differ.
    """
    rng = np.random.default_rng(seed)
    breaks = np.sort(rng.choice(np.arange(1, d), size=segments - 1, replace=False))
    # Shifting by 1..4 modulo 5 never returns to the same level.
    shifts = np.concatenate([[rng.integers(5)], rng.integers(1, 5, size=segments - 1)])
    levels = np.cumsum(shifts) % 5 - 2.0
    w = np.repeat(levels, np.diff(np.concatenate([[0], breaks, [d]])))
    return _linear(rng, n, w, noise)


def _linear(rng, n, w, noise):
    X = rng.standard_normal((n, w.size))
    y = X @ w + noise * rng.standard_normal(n)
    return X, y, w


def _check_regression(source, n, d, noise, seed):
    _check(source, n > 0, f"n must be positive, got {n}")
    _check(source, d > 0, f"d must be positive, got {d}")
    _check(source, noise >= 0, f"noise must be >= 0, got {noise}")
    _check_seed(source, seed)


def sparse_regression(
    variables, base_dir, /, n: int = 200, d: int = 50, k: int = 5, noise: float = 0.1, seed: int = 0
):
    """Linear regression with a k-sparse true weight vector (see sparse_regression_truth)."""
    _check_regression("sparse_regression", n, d, noise, seed)
    _check("sparse_regression", 0 <= k <= d, f"k must be between 0 and d={d}, got {k}")
    X, y, _ = sparse_regression_truth(n, d, k, noise, seed)
    return _assign("sparse_regression", variables, [(X, "features"), (y, "target")])


def piecewise_regression(
    variables, base_dir, /,
    n: int = 200, d: int = 50, segments: int = 4, noise: float = 0.1, seed: int = 0,
):
    """Linear regression with a piecewise-constant true weight (see piecewise_regression_truth)."""
    source = "piecewise_regression"
    _check_regression(source, n, d, noise, seed)
    _check(source, 1 <= segments <= d, f"segments must be between 1 and d={d}, got {segments}")
    X, y, _ = piecewise_regression_truth(n, d, segments, noise, seed)
    return _assign(source, variables, [(X, "features"), (y, "target")])


# ---------------------------------------------------------------- files


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _resolve(source, path, base_dir):
    full = (base_dir / pathlib.Path(path).expanduser()).resolve()
    if not full.is_file():
        raise DatasetError(f"{source}: file not found: {full}")
    return full


def _check_rows(source, data):
    """All arrays must share a positive number of rows."""
    counts = {name: array.shape[0] for name, array in data.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise DatasetError(f"{source}: variables have different numbers of examples ({listed})")
    if 0 in counts.values():
        raise DatasetError(f"{source}: the file contains no examples")
    return data


def npz(variables, base_dir, /, path: str):
    """A NumPy .npz archive with one array per data variable, named after it."""
    full = _resolve("npz", path, base_dir)
    try:
        archive = np.load(full, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not named arrays")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"npz: cannot read {full} as an .npz archive: {exc}") from None
    data = {}
    for name, shape in variables:
        if name not in arrays:
            have = ", ".join(sorted(arrays)) or "none"
            raise DatasetError(f"npz: {full} has no array '{name}' (arrays present: {have})")
        array = arrays[name]
        if array.ndim == 0 or array.shape[1:] != shape:
            expected = f"(n, {', '.join(map(str, shape))})" if shape else "(n,)"
            raise DatasetError(
                f"npz: array '{name}' in {full} has shape {array.shape}, "
                f"expected {expected} for {name} : {_type(shape)}"
            )
        if np.iscomplexobj(array):
            raise DatasetError(f"npz: array '{name}' in {full} is complex ({array.dtype}); the data are real numbers")
        if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
            raise DatasetError(f"npz: array '{name}' in {full} is not numeric ({array.dtype})")
        _check_finite(f"npz: array '{name}' in {full}", array)
        data[name] = array.astype(np.float32)
    return _check_rows("npz", data)


def _check_finite(where, array):
    """Data are finite float32 numbers: NaN, infinities and values beyond ±3.4e38 (infinite in
    float32) are refused, naming the first such entry."""
    values = np.asarray(array, dtype=np.float64)
    bad = ~(np.abs(values) <= FLOAT32_MAX)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "is not a number" if np.isnan(values[index]) else "is infinite in float32"
        raise DatasetError(f"{where}: entry {list(index)} = {float(values[index])!r} {what}; the data must be finite")


_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _is_number(field):
    """A decimal number as the language writes one (no '1_000', no 'nan' or 'inf', no hex)."""
    return _NUMBER.fullmatch(field.strip()) is not None


def csv(variables, base_dir, /, path: str):
    """A numeric comma-separated file: the variables' flattened columns in declaration order.

    A first line of names only (no field a number) is a header and skipped; a line mixing
    numbers and text, a field that is not a decimal number (`1_000`, `nan`, `inf`), a value
    infinite in float32 or a line with another number of columns is an error naming the line.
    """
    full = _resolve("csv", path, base_dir)
    try:
        with open(full, newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(_csv.reader(handle), 1) if row]
    except (OSError, UnicodeDecodeError, _csv.Error) as exc:
        raise DatasetError(f"csv: cannot read {full} ({exc})") from None
    if rows and not any(_is_number(field) for field in rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"csv: {full} contains no data rows")
    sizes = [math.prod(shape) for _, shape in variables]
    expected = sum(sizes)
    values = np.empty((len(rows), expected), dtype=np.float32)
    for i, (number, row) in enumerate(rows):
        if len(row) != expected:
            raise DatasetError(
                f"csv: {full} line {number} has {len(row)} column(s), but the program declares "
                f"{_declared(variables)} = {expected} column(s)"
            )
        column = next((c for c, field in enumerate(row, 1) if not _is_number(field)), None)
        if column is not None:
            raise DatasetError(
                f"csv: {full} line {number} column {column}: {row[column - 1]!r} is not a decimal number"
            )
        fields = [float(field) for field in row]
        column = next((c for c, v in enumerate(fields, 1) if not abs(v) <= FLOAT32_MAX), None)
        if column is not None:
            raise DatasetError(
                f"csv: {full} line {number} column {column}: {row[column - 1]} is infinite in float32 (beyond 3.4e38)"
            )
        values[i] = fields
    data, start = {}, 0
    for (name, shape), size in zip(variables, sizes):
        data[name] = values[:, start:start + size].reshape(len(rows), *shape)
        start += size
    return data


SOURCES = {
    "digits": digits,
    "digits_binary": digits_binary,
    "breast_cancer": breast_cancer,
    "ring8": ring8,
    "gaussian": gaussian,
    "sparse_regression": sparse_regression,
    "piecewise_regression": piecewise_regression,
    "npz": npz,
    "csv": csv,
}
