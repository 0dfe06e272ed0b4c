"""Parameter files and checkpoints (SPEC section 9.6): `run --save`, `eval --params`,
`sample --params`, `run --checkpoint DIR --every S --resume`.

A parameter file is a NumPy `.npz` with one array per leaf of the parameter tree, named by its
path (`decoder/0/w`: the net `decoder`, its first layer, the weights). A checkpoint is one
`.npz` of the whole training state (parameters, optimiser states, the step, the averaged
iterate), its leaves named the same way, with the run's history and the identity of the run:
a hash of the program's IR and dynamics, the seed and the number of steps. Both are written to
a temporary file and renamed over the old one (os.replace), so a crash while writing leaves the
previous file whole.
"""
from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from compiler.driver.files import write_atomically
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import program_text

CHECKPOINT_NAME = "checkpoint.npz"
META = "__run__"   # the entry of a checkpoint holding the run's identity and history (JSON)


def leaf_name(path) -> str:
    """A tree path as `a/0/w`: dict keys, list positions and attribute names joined by '/'."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
    return "/".join(parts)


def leaves_by_name(tree) -> dict[str, np.ndarray]:
    import jax
    return {leaf_name(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def save_npz(path: Path, option: str, arrays: dict[str, np.ndarray]) -> None:
    """`arrays` written as one .npz, atomically."""
    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    write_atomically(path, option, write)


def read_npz(path: Path, option: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file; a diagnostic naming the resolved path where it cannot be read."""
    where = path.resolve()
    try:
        with np.load(where, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except OSError as e:
        raise AttractorError(f"cannot read {where}: {e.strerror or e}", None, option) from None
    except (ValueError, zipfile.BadZipFile, EOFError) as e:
        raise AttractorError(f"cannot read {where}: not a NumPy .npz file ({e})", None, option) from None


def fill(template, arrays: dict[str, np.ndarray], where: Path, option: str, what: str):
    """`template`'s tree with each leaf taken from `arrays` by name: every leaf present, of the
    template's shape and dtype (a diagnostic naming the first that is not)."""
    import jax
    pairs, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, leaf in pairs:
        name = leaf_name(path)
        if name not in arrays:
            raise AttractorError(f"{where} has no array '{name}': not {what} of this program", None, option)
        value, want = arrays[name], np.asarray(leaf)
        if value.shape != want.shape:
            raise AttractorError(f"{where}: '{name}' has shape {value.shape}, the program's is {want.shape}",
                                 None, option)
        if value.dtype != want.dtype:
            raise AttractorError(f"{where}: '{name}' has dtype {value.dtype}, the program's is {want.dtype}",
                                 None, option)
        leaves.append(value)
    extra = sorted(set(arrays) - {leaf_name(p) for p, _ in pairs} - {META})
    if extra:
        raise AttractorError(f"{where} has arrays the program does not declare: {', '.join(extra[:5])}", None, option)
    restored = jax.tree_util.tree_unflatten(treedef, leaves)
    return jax.tree.map(lambda x, t: jax.device_put(x, t.sharding) if hasattr(t, "sharding") else x,
                        restored, template)


def save_params(path: Path, params) -> None:
    save_npz(path, "--save", leaves_by_name(params))


def load_params(path: str, mod) -> dict:
    """The parameters in `path` (relative to the working directory), checked against the program's
    (`mod.init`'s tree: every leaf, its shape and dtype)."""
    import jax
    where = Path(path)
    template = jax.eval_shape(mod.init, jax.random.PRNGKey(0))
    arrays = read_npz(where, "--params")
    import jax.numpy as jnp
    params = fill(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template), arrays, where.resolve(),
                  "--params", "a parameter file")
    return jax.tree.map(jnp.asarray, params)


def run_identity(prog, dynamics: str, seed: int, steps) -> dict:
    """What a checkpoint must match to be resumed: the program (a hash of its IR after the
    passes, and its dynamics), the seed and the number of steps asked for."""
    text = program_text(prog.program) + "\n" + dynamics
    return {"program": hashlib.sha256(text.encode()).hexdigest(), "seed": int(seed),
            "steps": None if steps is None else int(steps)}


class Checkpoints:
    """`DIR/checkpoint.npz`, written at most every `every` seconds after a call of the training
    loop (and at the end of the run), and read back by `resume`."""

    def __init__(self, folder: str, every: float, identity: dict):
        self.folder, self.every, self.identity = Path(folder), every, identity
        self.path = self.folder / CHECKPOINT_NAME
        self.last = time.monotonic()
        self.final_state = None   # the state the training loop handed over last

    def check_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise AttractorError(f"{self.folder.resolve()} is not a folder", None, "--checkpoint")
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, state, history) -> None:
        arrays = leaves_by_name(state)
        arrays[META] = np.array(json.dumps({**self.identity, "history": history}))
        save_npz(self.path, "--checkpoint", arrays)
        self.last = time.monotonic()

    def __call__(self, state, history) -> None:
        self.final_state = state
        if time.monotonic() - self.last >= self.every:
            self.write(state, history)

    def finish(self, history) -> None:
        """The state at the end of the run, so that a finished run resumed trains no further."""
        if self.final_state is not None:
            self.write(self.final_state, history)

    def exists(self) -> bool:
        return self.path.is_file()

    def resume(self, state):
        """(state, history) from the checkpoint, checked to be of this run."""
        where = self.path.resolve()
        arrays = read_npz(self.path, "--resume")
        if META not in arrays:
            raise AttractorError(f"{where} is not a checkpoint of attractor (no run record)", None, "--resume")
        meta = json.loads(str(arrays[META]))
        if meta.get("program") != self.identity["program"]:
            raise AttractorError(f"{where} is a checkpoint of another program (or another --via/--dynamics); "
                                 "remove it or choose another --checkpoint folder", None, "--resume")
        for field in ("seed", "steps"):
            if meta.get(field) != self.identity[field]:
                raise AttractorError(f"{where} was written by a run with --{field} {meta.get(field)}, "
                                     f"this one has {self.identity[field]}", None, "--resume")
        return fill(state, arrays, where, "--resume", "a checkpoint"), meta["history"]


def block_draws(prog, name: str, params_path: str, data_source: str | None, n: int, seed: int) -> tuple[np.ndarray, str]:
    """`attractor sample --of NAME`: draws of the model, sampler or guide `name` at the parameters in
    `params_path`, by ancestral sampling (the emitted module's `draw`). A guide is applied to the
    first n examples of the data (`data_source`, else the program's): one draw of its latents per
    example; a model or a sampler gives n draws of its data variables. Returns (the draws, one row
    per draw: a single variable as it is, several flattened and joined in order; what was drawn)."""
    import jax

    from compiler import ir
    kinds = {b.name: b.kind for b in prog.typed.of_type(ir.Block)}
    if name not in kinds:
        raise AttractorError(f"--of {name}: the program has no model, sampler or guide of that name "
                             f"(it has: {', '.join(kinds) or 'none'})", None, "--of")
    if name not in {b.name for b in prog.program.of_type(ir.Block)}:
        raise AttractorError(f"--of {name}: the compiled program has no {kinds[name]} {name} left to draw from",
                             None, "--of")
    mod = prog.build(draws_of=name)
    params = load_params(params_path, mod)
    given = {}
    if mod.DRAW_GIVEN:
        data = prog.load_data(data_source)
        missing = [g for g in mod.DRAW_GIVEN if g not in data]
        if missing:
            raise AttractorError(f"--of {name}: the data have no variable '{missing[0]}', which {kinds[name]} {name} "
                                 "is given", None, "--data" if data_source else "--of")
        n = min(n, *(len(data[g]) for g in mod.DRAW_GIVEN))
        given = {g: data[g][:n] for g in mod.DRAW_GIVEN}
    draws = [np.asarray(a) for a in mod.draw(params, jax.random.PRNGKey(seed), n, given)]
    joined = draws[0] if len(draws) == 1 else np.concatenate([a.reshape(len(a), -1) for a in draws], axis=1)
    condition = f" given {', '.join(mod.DRAW_GIVEN)} (the first {n} examples)" if mod.DRAW_GIVEN else ""
    return joined, f"{', '.join(mod.DRAWN)} from {kinds[name]} {name}{condition}"
