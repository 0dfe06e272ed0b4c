"""Source text → untyped IR, with a Lark LALR parser and a transformer per grammar rule."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from importlib import resources
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.indenter import DedentError, Indenter
from lark.visitors import Transformer_NonRecursive

from compiler import ir
from compiler.data.python_nets import PythonNetError, split_reference
from compiler.ir.builtins import PREFIX_FUNCTIONS
from compiler.ir.diagnostics import AttractorError, Loc


class _Indenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types: list[str] = []   # brackets do not continue lines
    CLOSE_PAREN_types: list[str] = []
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


@functools.cache
def _lark() -> Lark:
    """The LALR parser, built once per process; its tables are cached between processes (`_grammar_cache`)."""
    text = resources.files("grammar").joinpath("attractor.lark").read_text()
    text = text.replace("%PREFIX_FUNCTIONS%", "|".join(PREFIX_FUNCTIONS))
    return Lark(text, parser="lalr", postlex=_Indenter(), propagate_positions=True,
                maybe_placeholders=True, cache=_grammar_cache(text))


def _grammar_cache(grammar: str) -> str | bool:
    """Where Lark keeps the analysed grammar (its LALR tables, 0.2 s to build) between processes:
    the user's own cache folder, not a shared temporary one, since the file is unpickled; named by
    the grammar's hash (Lark also checks grammar, options and versions inside it and rebuilds on
    any difference or a damaged file). False, no cache, where there is no home or no folder can be made."""
    try:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attractor"
        folder.parent.mkdir(exist_ok=True)   # inside an existing home: never a home made up
        folder.mkdir(exist_ok=True)
    except (OSError, RuntimeError):
        return False
    return str(folder / f"grammar-{hashlib.sha256(grammar.encode()).hexdigest()[:16]}.lark")


def _loc(x) -> Loc | None:
    if isinstance(x, Token):
        return Loc(x.line, x.column)
    meta = getattr(x, "meta", x)
    if getattr(meta, "empty", True):
        return None
    return Loc(meta.line, meta.column)


FLOAT32_MAX = 3.4028234663852886e38   # the largest finite float32: programs run in float32
FLOAT32_TINY = 1.1754943508222875e-38   # the smallest normal float32 (XLA flushes smaller ones to 0)


def _number(tok: Token) -> float:
    """A numeric literal, refused where float32 cannot hold it: beyond ±3.4e38 it is infinite
    (`1e39`, `1e999`, a 400-digit integer), below 1.2e-38 it is flushed to zero."""
    value = float(tok)
    if not value <= FLOAT32_MAX:
        raise AttractorError(f"the number {_abbreviate(tok)} is too large: float32 holds at most 3.4e38", _loc(tok))
    if 0 < value < FLOAT32_TINY:
        raise AttractorError(f"the number {_abbreviate(tok)} is too small: float32 rounds it to 0 "
                             f"(its smallest normal number is 1.2e-38); write 0 if that is meant", _loc(tok))
    return value


def _abbreviate(text: str) -> str:
    text = str(text)
    return text if len(text) <= 24 else f"{text[:10]}...{text[-6:]} ({len(text)} characters)"


ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


def unescape(tok: Token) -> str:
    """The text of a quoted string, read by the language's own escapes: \\\\ \\" \\' \\n \\t (SPEC §2);
    any other backslash is an error at its column (strings are never evaluated as Python)."""
    body, out, i = str(tok)[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in ESCAPES:
                raise AttractorError(f"unknown escape '\\{nxt}' in a string; the escapes are \\\\ \\\" \\' \\n \\t",
                                     Loc(tok.line, tok.column + 1 + i))
            out.append(ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _no_repeats(pairs, what: str, locs) -> None:
    """A key given twice in a key=value list is an error (it would silently keep the last)."""
    seen = set()
    for (key, _), loc in zip(pairs, locs):
        if key in seen:
            raise AttractorError(f"{what} '{key}' is given twice", loc)
        seen.add(key)


class _Build(Transformer_NonRecursive):
    """One method per named grammar rule, `method(meta, children)`; each returns IR (or plain
    values for options). Methods are looked up on the class once per rule name: lark's
    `v_args` wraps every method again at each attribute access, a third of a 5000-term parse."""

    __visit_tokens__ = False

    def _call_userfunc(self, tree, new_children=None):
        children = tree.children if new_children is None else new_children
        method = _BUILD_METHODS.get(tree.data)
        if method is None:
            return self.__default__(tree.data, children, tree.meta)
        return method(self, tree.meta, children)

    # ---- expressions
    def number(self, meta, c):
        return ir.Num(_number(c[0]), loc=_loc(meta))

    def name(self, meta, c):
        return ir.Ref(str(c[0]), loc=_loc(meta))

    def data_ref(self, meta, c):
        return ir.DataSet(loc=_loc(meta))

    def _binary(self, fn, meta, c):
        return ir.Apply(fn, (c[0], c[1]), loc=_loc(meta))

    def add(self, meta, c):
        return self._binary("add", meta, c)

    def sub(self, meta, c):
        return self._binary("sub", meta, c)

    def mul(self, meta, c):
        return self._binary("mul", meta, c)

    def div(self, meta, c):
        return self._binary("div", meta, c)

    def matmul(self, meta, c):
        return self._binary("matmul", meta, c)

    def pow(self, meta, c):
        return self._binary("pow", meta, c)

    def neg(self, meta, c):
        return ir.Apply("neg", (c[0],), loc=_loc(meta))

    def prefix_call(self, meta, c):
        return ir.Call(str(c[0]), (c[1],), loc=_loc(meta))

    def iverson(self, meta, c):
        return ir.Compare(str(c[1]), c[0], c[2], loc=_loc(meta))

    def array_literal(self, meta, c):
        return ir.Apply("array", tuple(c), loc=_loc(meta))

    def subscript(self, meta, c):
        """`base[i, j]` as parsed: Apply("index", (base, item, ...)), an item an expression or a Range."""
        return ir.Apply("index", tuple(c), loc=_loc(meta))

    def index_at(self, meta, c):
        return c[0]

    def index_range(self, meta, c):
        return ir.Range(c[0], c[1], loc=_loc(meta))

    def expectation(self, meta, c):
        return self._expect(meta, c, "mean")

    def sum_over(self, meta, c):
        return self._expect(meta, c, "sum")

    def _expect(self, meta, c, reduce):
        _, binder, source, shape, body = c
        if shape is not None:
            if not isinstance(source, ir.Call):
                raise AttractorError("a type in E[v ~ D : type] may follow only a distribution", _loc(meta))
            source = dataclasses.replace(source, shape=shape)
        return ir.Expect(binder, source, body, reduce=reduce, loc=_loc(meta))

    def binder_name(self, meta, c):
        return (str(c[0]),)

    def binder_tuple(self, meta, c):
        names = [str(t) for t in c]
        for i, t in enumerate(c):
            if names[i] in names[:i]:
                raise AttractorError(f"'{t}' is bound twice in E[({', '.join(names)}) ~ ...]", _loc(t))
        return tuple(names)

    def call(self, meta, c):
        name, arglist = c
        args, keys, kwargs, bar, split = [], [], [], "", -1
        for item in (arglist or []):
            if isinstance(item, Token) and item.type == "BAR":
                bar, split = str(item), len(args)
            elif isinstance(item, tuple):
                keys.append(item[0])
                kwargs.append(item[1])
            else:
                if kwargs:
                    raise AttractorError("positional argument after a keyword argument", _loc(item) or _loc(meta))
                args.append(item)
        return ir.Call(str(name), tuple(args), tuple(keys), tuple(kwargs), bar, split, loc=_loc(name))

    def arg_list(self, meta, c):
        return c

    def kwarg_expr(self, meta, c):
        return (str(c[0]), c[1])

    # ---- option values (plain Python values)
    def signed_number(self, meta, c):
        return _number(c[0])

    def negative_number(self, meta, c):
        return -_number(c[0])

    def opt_name(self, meta, c):
        return str(c[0])

    def option(self, meta, c):
        return (str(c[0]), c[1])

    def kwarg(self, meta, c):
        return (str(c[0]), c[1])

    def src_string(self, meta, c):
        return unescape(c[0])

    def src_kwarg(self, meta, c):
        return (str(c[0]), c[1])

    # ---- declarations
    def type(self, meta, c):
        return tuple(int(t) for t in c)

    def param_decl(self, meta, c):
        return ir.Param(str(c[0]), c[1], c[2], loc=_loc(c[0]))

    def param_random(self, meta, c):
        """`param W : real[3, 4] ~ Normal(0, 0.1)`: a random initial value, held as a Tilde until checked."""
        return ir.Param(str(c[0]), c[1], ir.Tilde(str(c[0]), c[2], loc=_loc(c[2]) or _loc(meta)), loc=_loc(c[0]))

    def player_decl(self, meta, c):
        """`player NAME over P1, P2: minimize|maximize EXPR`."""
        name, *params, sense, loss = c
        if str(sense) == "estimate":
            raise AttractorError("a player minimizes or maximizes its loss; 'estimate' is not a player's sense",
                                 _loc(sense))
        names = [str(p) for p in params]
        twice = next((p for i, p in enumerate(params) if names[i] in names[:i]), None)
        if twice is not None:
            raise AttractorError(f"'{twice}' is listed twice for player {name}", _loc(twice))
        return ir.Player(str(name), tuple(names), "min" if str(sense) == "minimize" else "max", loss, loc=_loc(name))

    def net_decl(self, meta, c):
        name, kind, *rest = c
        widths = tuple(int(t) for t in rest if isinstance(t, Token) and t.type == "INT")
        pairs = [t for t in rest if isinstance(t, tuple)]
        _no_repeats(pairs, "mlp option", [_loc(meta)] * len(pairs))
        options = dict(pairs)
        if str(kind) != "mlp":
            raise AttractorError(f"unknown network kind '{kind}'; the language has mlp(widths; act=...)", _loc(kind))
        unknown = set(options) - {"act"}
        if unknown:
            raise AttractorError(f"unknown mlp option '{sorted(unknown)[0]}'; the option is act=relu|tanh|softplus|sigmoid|elu", _loc(meta))
        act = options.get("act", "relu")
        if act not in ("relu", "tanh", "softplus", "sigmoid", "elu", "swish"):
            raise AttractorError(f"unknown activation '{act}'; use relu, tanh, softplus, sigmoid, elu or swish", _loc(meta))
        if len(widths) < 2:
            raise AttractorError("mlp needs at least an input and an output width", _loc(kind))
        if any(w <= 0 for w in widths):
            raise AttractorError("mlp widths must be positive", _loc(kind))
        return ir.Net(str(name), widths, str(act), loc=_loc(name))

    def net_python(self, meta, c):
        """`net f : python("nets.py:name")`: the reference checked here (a safe path, an identifier),
        the file loaded by the checker."""
        name, kind, reference = c
        if str(kind) != "python":
            raise AttractorError(f"unknown network kind '{kind}'; a net is mlp(widths; act=...) or "
                                 "python(\"FILE.py:NAME\")", _loc(kind))
        text = unescape(reference)
        try:
            split_reference(text)
        except PythonNetError as e:
            raise AttractorError(str(e), _loc(reference)) from None
        return ir.Net(str(name), (), python=text, loc=_loc(reference))

    def const_decl(self, meta, c):
        return ir.Const(str(c[0]), c[1], loc=_loc(c[0]))

    def data_var(self, meta, c):
        return (str(c[0]), c[1], _loc(c[0]))

    def data_decl(self, meta, c):
        vars_ = [v for v in c if isinstance(v, tuple)]
        source = next((v for v in c if isinstance(v, ir.Source)), None)
        return ir.DataDecl(tuple(v[0] for v in vars_), tuple(v[1] for v in vars_), source, loc=vars_[0][2])

    def source_name(self, meta, c):
        return ir.Source(str(c[0]), loc=_loc(c[0]))

    def source_call(self, meta, c):
        args = tuple(a for a in c[1:] if a is not None and not isinstance(a, tuple))
        kwargs = tuple(a for a in c[1:] if isinstance(a, tuple))
        _no_repeats(kwargs, f"{c[0]} argument", [_loc(c[0])] * len(kwargs))
        return ir.Source(str(c[0]), args, kwargs, loc=_loc(c[0]))

    def divergence_decl(self, meta, c):
        return ir.DivergenceDef(str(c[0]), str(c[1]), c[2], loc=_loc(c[0]))

    # ---- blocks
    def name_list(self, meta, c):
        return tuple(str(t) for t in c)

    def tilde_line(self, meta, c):
        return ir.Tilde(str(c[0]), c[1], c[2], loc=_loc(c[0]))

    def assign_line(self, meta, c):
        return ir.Assign(str(c[0]), c[1], loc=_loc(c[0]))

    def model_block(self, meta, c):
        return ir.Block("model", str(c[0]), tuple(c[1:]), loc=_loc(c[0]))

    def sampler_block(self, meta, c):
        return ir.Block("sampler", str(c[0]), tuple(c[1:]), loc=_loc(c[0]))

    def guide_block(self, meta, c):
        name, latents, given, *lines = c
        names = list(latents) + list(given or ())
        twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if twice is not None:
            raise AttractorError(f"'{twice}' appears twice in the header of guide {name}: each variable is named once", _loc(name))
        return ir.Block("guide", str(name), tuple(lines), latents, given or (), loc=_loc(name))

    # ---- objective and friends
    def objective(self, meta, c):
        return ir.Objective(str(c[0]), c[1], c[2], loc=_loc(meta))

    def rule_plain(self, meta, c):
        return ir.RuleRef(str(c[0]), loc=_loc(c[0]))

    def rule_call(self, meta, c):
        return ir.RuleRef(str(c[0]), tuple(c[1:]), loc=_loc(c[0]))

    def rule_opt(self, meta, c):
        return (str(c[0]), True if c[1] is None else c[1])

    def constraint(self, meta, c):
        return ir.Constraint(str(c[1]), c[0], c[2], loc=_loc(meta))

    def bad_equality(self, meta, c):
        raise AttractorError("an equality constraint is written with '==', not '='", _loc(meta))

    def report(self, meta, c):
        return ir.Report(str(c[0]), c[1], loc=_loc(c[0]))

    def train_call(self, meta, c):
        kwargs = tuple(a for a in c[1:] if a is not None)
        _no_repeats(kwargs, f"{c[0]} option", [_loc(c[0])] * len(kwargs))
        return (str(c[0]), kwargs)

    def train_opt(self, meta, c):
        return (str(c[0]), c[1], _loc(c[0]))

    def train(self, meta, c):
        return ir.Train(tuple(c), loc=_loc(meta))

    def start(self, meta, c):
        return [s for s in c if s is not None and not isinstance(s, Token)]


_BUILD_METHODS = {name: f for name, f in vars(_Build).items() if callable(f) and not name.startswith("_")}


_READABLE = {
    "_NL": "end of line", "_INDENT": "an indented block", "_DEDENT": "end of block",
    "NAME": "a name", "CALLEE": "a call", "NUMBER": "a number", "INT": "an integer",
    "STRING": "a string", "CMP": "a comparison", "BAR": "'|'", "LPAR": "'('", "RPAR": "')'",
    "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='",
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'",
    "TILDE": "'~'", "PREFIX_FN": "a function", "EXPECT": "'E['", "SUM_OVER": "'sum['",
    "SENSE": "minimize/maximize/estimate", "SEMICOLON": "';'", "AT": "'@'", "$END": "end of input",
}


def _describe(tok: Token) -> str:
    if tok.type in ("_NL", "$END"):
        return _READABLE[tok.type]
    if tok.type in ("_INDENT", "_DEDENT"):
        return "unexpected indentation" if tok.type == "_INDENT" else "end of block"
    return f"'{tok}'"


def _syntax_error(e: UnexpectedInput) -> AttractorError:
    loc = Loc(e.line, e.column) if getattr(e, "line", -1) and e.line > 0 else None
    if isinstance(e, UnexpectedCharacters):
        return AttractorError(f"unexpected character '{e.char}'", loc)
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "_INDENT":
            return AttractorError("unexpected indentation", loc)
        if tok.type == "$END":
            return AttractorError("unexpected end of input", loc)
        expected = sorted({_READABLE.get(t, f"'{t.lower()}'" if t.isalpha() else t) for t in e.expected
                           if not t.startswith("__")})
        hint = ""
        if tok.type == "_NL" and "';'" not in expected and {"')'", "']'"} & set(expected):
            hint = " (brackets do not continue lines)"
        listed = ", ".join(expected[:8]) + (", ..." if len(expected) > 8 else "")
        return AttractorError(f"unexpected {_describe(tok)}; expected {listed}{hint}", loc)
    if isinstance(e, UnexpectedEOF):
        return AttractorError("unexpected end of input", loc)
    return AttractorError(str(e).splitlines()[0], loc)


def _check_layout(text: str) -> None:
    for i, line in enumerate(text.splitlines(), 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            raise AttractorError("a tab in indentation; indent with spaces", Loc(i, indent.index("\t") + 1))


def parse(text: str) -> list[ir.Node]:
    """Parse a program into a list of untyped statements (raises AttractorError)."""
    _check_layout(text)
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _lark().parse(text)
        return _Build().transform(tree)
    except UnexpectedInput as e:
        raise _syntax_error(e) from None
    except DedentError:
        line = _dedent_line(text)
        raise AttractorError("unindent does not match any outer indentation level", line) from None
    except VisitError as e:
        if isinstance(e.orig_exc, AttractorError):
            raise e.orig_exc from None
        raise


def _dedent_line(text: str) -> Loc | None:
    stack = [0]
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        width = len(line) - len(line.lstrip(" "))
        if width > stack[-1]:
            stack.append(width)
        while width < stack[-1]:
            stack.pop()
        if width != stack[-1]:
            return Loc(i, 1)
    return None
