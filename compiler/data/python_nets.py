"""The author's networks: `net f : python("nets.py:name")` (SPEC §9.5).

`name` is an object of the Python file `nets.py` with `init(key, x) -> params` and
`apply(params, x) -> y` (a Flax linen module has both). Both see one example `x`; the emitted
code maps `apply` over the batch and the draws with `jax.vmap`. The file is the program author's
code and runs with the author's rights, at compile time (to find the shapes) and when the emitted
module runs; nothing else of a program's text is ever executed.

A relative path starts at the program file's folder (the emitted module: that folder where it
exists, else the module's own folder); an absolute path is used as it is. Paths are restricted to
letters, digits and `_ . - /` and end in `.py`; `name` is an identifier.

Used by the checker (shapes) and copied into emitted modules (loading): numpy, jax and the
standard library only.
"""

import importlib.util
import pathlib
import re
import sys

from compiler.data.datasets import DatasetError

NET_PATH = re.compile(r"[A-Za-z0-9_./-]+\.py")
NET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PythonNetError(DatasetError):
    """message only; the caller attaches the source location. A file of the author's nets is one of
    the program's input files, as a data file is: an emitted module that cannot read it ends as it
    does for unreadable data (one line on stderr, exit code 2)."""


def split_reference(text):
    """`"nets.py:encoder"` -> ("nets.py", "encoder"), or PythonNetError saying what is wrong."""
    path, colon, name = text.rpartition(":")
    if not colon:
        raise PythonNetError(f"write python(\"FILE.py:NAME\"), the file and the object in it; got {text!r}")
    if not NET_PATH.fullmatch(path) or "//" in path:
        raise PythonNetError(f"the file {path!r} must end in .py and use only letters, digits and _ . - /")
    if not NET_NAME.fullmatch(name):
        raise PythonNetError(f"{name!r} is not a Python identifier")
    return path, name


_LOADED = {}   # (resolved path, modification time) -> the imported module


def python_net(path, name, folder=None):
    """The object `name` of the Python file `path` (relative paths start at `folder`), checked to
    have callable `init` and `apply`; each file is imported once (again when it changes)."""
    where = pathlib.Path(path)
    if not where.is_absolute() and folder is not None:
        where = pathlib.Path(folder) / where
    where = where.resolve()
    if not where.is_file():
        raise PythonNetError(f"cannot read {where}: no such file")
    stamp = (str(where), where.stat().st_mtime_ns)
    module = _LOADED.get(stamp)
    if module is None:
        module_name = f"attractor_user_{re.sub(r'[^A-Za-z0-9_]', '_', where.stem)}_{len(_LOADED)}"
        spec = importlib.util.spec_from_file_location(module_name, where)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module   # dataclasses (a Flax module is one) look their module up
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[module_name]
            raise PythonNetError(f"running {where} failed: {type(e).__name__}: {e}") from None
        _LOADED[stamp] = module
    if not hasattr(module, name):
        raise PythonNetError(f"{where} defines no '{name}'")
    net = getattr(module, name)
    missing = [m for m in ("init", "apply") if not callable(getattr(net, m, None))]
    if missing:
        raise PythonNetError(f"'{name}' in {where} has no method {' or '.join(missing)}: a net from Python is an "
                             "object with init(key, x) -> params and apply(params, x) -> y")
    return net


def python_net_shapes(net, shape_in):
    """(output shape, number of parameters) of `net` on one example of shape `shape_in`, found with
    `jax.eval_shape` (nothing is computed); PythonNetError where init or apply fails or where apply
    does not return one floating-point array."""
    import jax
    import numpy as np
    x = jax.ShapeDtypeStruct(tuple(shape_in), np.float32)
    try:
        params = jax.eval_shape(net.init, jax.random.PRNGKey(0), x)
    except Exception as e:
        raise PythonNetError(f"init(key, x) failed on an input of shape {tuple(shape_in)}: {type(e).__name__}: {e}") from None
    try:
        out = jax.eval_shape(net.apply, params, x)
    except Exception as e:
        raise PythonNetError(f"apply(params, x) failed on an input of shape {tuple(shape_in)}: {type(e).__name__}: {e}") from None
    if not isinstance(out, jax.ShapeDtypeStruct) or not np.issubdtype(out.dtype, np.floating):
        raise PythonNetError(f"apply(params, x) must return one floating-point array, not {type(out).__name__}")
    size = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))
    return tuple(out.shape), size
