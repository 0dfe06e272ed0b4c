"""Deterministic printing of the IR: text (readable math), JSON (structure)."""
from __future__ import annotations

import dataclasses
import math

from compiler import ir
from compiler.ir.builtins import INFIX, OPERATIONS

_PREFIX = 3
_ATOM = 5

# operations written under another name: one-argument `max(v)` / `min(v)` reduce (SPEC §9.5),
# so that the text printed is the text the parser reads back to the same IR
WRITTEN = {"amax": "max", "amin": "min"}


def number(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def shape_text(shape) -> str:
    return "real" if not shape else "real[" + ", ".join(map(str, shape)) + "]"


def show(node: ir.Node) -> str:
    return _show(node)[0]


def _wrap(node: ir.Node, min_prec: int) -> str:
    text, prec = _show(node)
    return f"({text})" if prec < min_prec else text


def _density(name: str, vars_, given) -> str:
    inner = ", ".join(vars_)
    if given:
        inner += " | " + ", ".join(given)
    return f"{name}({inner})"


def _show(node: ir.Node) -> tuple[str, int]:
    """(text, precedence of its outermost operator)."""
    printed = getattr(node, "printed", None)
    if printed is not None:   # a node type a rule family introduces prints itself
        return printed()
    if isinstance(node, ir.Num):
        text = number(node.value)
        return (text, _ATOM) if node.value >= 0 else (text, _PREFIX)
    if isinstance(node, ir.Ref):
        return node.name, _ATOM
    if isinstance(node, ir.DataSet):
        return "data", _ATOM
    if isinstance(node, ir.Apply):
        fn, args = node.fn, node.args
        if fn in INFIX:
            prec = OPERATIONS[fn].precedence
            if fn == "pow":
                return f"{_wrap(args[0], _ATOM)}^{_wrap(args[1], _PREFIX)}", prec
            left = _wrap(args[0], prec)
            right = _wrap(args[1], prec + 1)
            return f"{left} {INFIX[fn]} {right}", prec
        if fn == "neg":
            return f"-{_wrap(args[0], _PREFIX)}", _PREFIX
        if fn == "log" and isinstance(args[0], ir.Density):
            return f"log {show(args[0])}", _PREFIX
        if fn == "array":
            return f"[{', '.join(show(a) for a in args)}]", _ATOM
        if fn in ("index", "take"):
            return f"{_wrap(args[0], _ATOM)}[{show(args[1])}]", _ATOM
        if fn == "slice":
            return f"{_wrap(args[0], _ATOM)}[{show(args[1])}:{show(args[2])}]", _ATOM
        return f"{WRITTEN.get(fn, fn)}({', '.join(show(a) for a in args)})", _ATOM
    if isinstance(node, ir.Compare):
        return f"[{show(node.lhs)} {node.op} {show(node.rhs)}]", _ATOM
    if isinstance(node, ir.NetCall):
        return f"{node.net}({', '.join(show(a) for a in node.args)})", _ATOM
    if isinstance(node, ir.Dist):
        fam_positional = node.family not in ("Bernoulli", "Categorical")
        parts = [show(a) if fam_positional else f"{k}={show(a)}" for k, a in zip(node.keys, node.args)]
        return f"{node.family}({', '.join(parts)})", _ATOM
    if isinstance(node, (ir.Density, ir.Sample)):
        return _density(node.model, node.vars, node.given), _ATOM
    if isinstance(node, ir.Expect):
        head = "E" if node.reduce == "mean" else "sum"
        binder = node.binder[0] if len(node.binder) == 1 else "(" + ", ".join(node.binder) + ")"
        src = show(node.source)
        if isinstance(node.source, ir.Dist) and node.source.shape:
            src += f" : {shape_text(node.source.shape)}"
        extra = f" x{node.samples}" if node.samples > 1 else ""
        return f"{head}[{binder} ~ {src}{extra}] {_wrap(node.body, _PREFIX)}", _PREFIX
    if isinstance(node, ir.Divergence):
        sep = ", " if node.kind == "JS" else " || "
        return f"{node.kind}({show(node.p)}{sep}{show(node.q)})", _ATOM
    if isinstance(node, ir.Let):
        return f"{_wrap(node.body, 1)} with {node.name} = {show(node.value)}", 0
    if isinstance(node, ir.Surrogate):
        return _show(node.train)
    if isinstance(node, ir.Sym):
        return f"{node.label}({', '.join(show(a) for a in node.args)})", _ATOM
    if isinstance(node, ir.Call):
        return f"{node.name}({', '.join(show(a) for a in node.args)})", _ATOM
    raise TypeError(f"cannot print {type(node).__name__}")


# ---- whole programs ---------------------------------------------------------------------

def _line(d: ir.Node) -> str:
    if isinstance(d, ir.Tilde):
        ann = f" : {shape_text(d.shape)}" if d.shape else ""
        return f"{d.name} ~ {show(d.dist)}{ann}"
    if isinstance(d, ir.Assign):
        return f"{d.name} = {show(d.value)}"
    raise TypeError(type(d).__name__)


def _decl(d: ir.Node) -> list[str]:
    owner = f"    # introduced for player {d.owner}" if getattr(d, "owner", "") else ""
    if isinstance(d, ir.Param):
        init = f" = {show(d.init)}" if d.init is not None else ""
        if isinstance(d.init, ir.Dist):
            init = f" ~ {show(d.init)}"
        return [f"param {d.name} : {shape_text(d.shape)}{init}{owner}"]
    if isinstance(d, ir.Net) and d.python:
        return [f'net {d.name} : python("{d.python}"){owner}']
    if isinstance(d, ir.Net):
        act = "" if d.act == "relu" else f"; act={d.act}"
        return [f"net {d.name} : mlp({', '.join(map(str, d.widths))}{act}){owner}"]
    if isinstance(d, ir.Const):
        return [f"const {d.name} = {show(d.value)}"]
    if isinstance(d, ir.DataDecl):
        vars_ = ", ".join(f"{n} : {shape_text(s)}" for n, s in zip(d.names, d.shapes))
        return [f"data {vars_}" + (f" from {source_text(d.source)}" if d.source else "")]
    if isinstance(d, ir.Block):
        head = f"{d.kind} {d.name}"
        if d.kind == "guide":
            head += "(" + ", ".join(d.latents) + (" | " + ", ".join(d.given) if d.given else "") + ")"
        return [head + ":"] + ["    " + _line(l) for l in d.lines]
    if isinstance(d, ir.DivergenceDef):
        return [f"divergence {d.name}({d.var}) = {show(d.body)}"]
    raise TypeError(type(d).__name__)


def source_text(src: ir.Source) -> str:
    if not src.args and not src.kwargs:
        return src.name
    parts = [repr(a) if isinstance(a, str) else number(a) for a in src.args]
    parts += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={number(v)}" for k, v in src.kwargs]
    return f"{src.name}({', '.join(parts)})"


def constraint_text(c: ir.Constraint) -> str:
    """A constraint as written: `subject to lhs op rhs`."""
    return f"subject to {show(c.lhs)} {c.op} {show(c.rhs)}"


def rule_text(rule: ir.RuleRef) -> str:
    if not rule.options:
        return rule.name
    opts = [k if v is True else f"{k}={number(v) if isinstance(v, float) else v}" for k, v in rule.options]
    return f"{rule.name}({', '.join(opts)})"


def program_text(p: ir.Program) -> str:
    out: list[str] = []
    for d in p.decls:
        out.extend(_decl(d))
    o = p.objective
    if not p.aux("declared_game"):   # a declared game's objective is its first player's loss
        out.append(f"{o.sense} {show(o.expr)}" + (f" via {rule_text(o.via)}" if o.via else ""))
    out.extend(constraint_text(c) for c in p.constraints)
    out.extend(f"report {r.name} = {show(r.expr)}" for r in p.reports)
    if p.train.options:
        out.append("train " + ", ".join(f"{k}={_train_value(v)}" for k, v in p.train.options))
    for pl in p.players:
        params = ", ".join(pl.params) or "(none)"
        if p.aux("declared_game"):   # as written
            out.append(f"player {pl.name} over {params}: {pl.sense}imize {show(pl.loss)}")
        else:
            out.append(f"player {pl.name} ({pl.sense} over {params}): {show(pl.loss)}")
    return "\n".join(out)


def _train_value(v) -> str:
    if isinstance(v, tuple):
        name, kwargs = v
        return f"{name}(" + ", ".join(f"{k}={number(x)}" for k, x in kwargs) + ")"
    return number(v) if isinstance(v, (int, float)) else str(v)


def to_json(node) -> object:
    """A structural JSON form of any IR value (locations omitted)."""
    if isinstance(node, ir.Node):
        out = {"node": type(node).__name__}
        for f in dataclasses.fields(node):
            if f.name != "loc":
                out[f.name] = to_json(getattr(node, f.name))
        if not isinstance(node, (ir.Program, ir.Player)) and _is_expr(node):
            out["text"] = show(node)
        return out
    if isinstance(node, (tuple, list)):
        return [to_json(v) for v in node]
    return node


def _is_expr(node: ir.Node) -> bool:
    try:
        show(node)
        return True
    except TypeError:
        return False


def decl_summary(d: ir.Node) -> str:
    """A declaration on one line, without its comment (how a derivation step lists what it introduced)."""
    head, *body = _decl(d)
    head = head.split("    #")[0]
    return f"{head} {'; '.join(line.strip() for line in body)}" if body else head
