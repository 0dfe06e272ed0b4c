"""Golden derivations: every `tests/golden/<rule>/<case>.att` is a program whose comments state
what compiling it must give.

    # CHECK: text       a line of the derivation text contains `text`; CHECKs match in order,
                        each on a line after the previous CHECK's line
    # CHECK-NOT: text   no line between the previous CHECK's line and the next CHECK's line
                        (or the end) contains `text`
    # ERROR: text       compiling fails with a diagnostic containing `text`

The derivation text is `str(prog.derivation)`, what `attractor compile FILE --show derivation`
prints. `pytest tests/test_golden.py --update` rewrites the CHECK lines from the current output
(one per `step`, `match:`, `becomes:` and `result:` line, or the `no rewrite needed` line),
keeping the program and each CHECK-NOT after the same-numbered CHECK it followed; an ERROR
line stays while the diagnostic still contains it, and is otherwise replaced by the message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from attractor import AttractorError, compile_source

GOLDEN = Path(__file__).resolve().parent / "golden"
FILES = sorted(GOLDEN.glob("*/*.att"))
DIRECTIVE = re.compile(r"^#\s*(CHECK|CHECK-NOT|ERROR):\s?(.*)$")
RECORDED = ("step ", "match:", "becomes:", "result:", "no rewrite needed")


@dataclass(frozen=True)
class Directive:
    kind: str       # CHECK, CHECK-NOT or ERROR
    text: str


def directives(source: str) -> list[Directive]:
    found = (DIRECTIVE.match(line.strip()) for line in source.splitlines())
    return [Directive(m.group(1), m.group(2).rstrip()) for m in found if m]


def derivation_lines(source: str, filename: str) -> list[str]:
    return str(compile_source(source, filename=filename).derivation).splitlines()


def check_lines(lines: list[str], expected: list[Directive]) -> None:
    """CHECKs in order, each on a later line; a CHECK-NOT nowhere between its neighbouring CHECKs."""
    at = 0                       # the first line the next CHECK may match
    pending: list[str] = []      # CHECK-NOTs waiting for the next CHECK to bound their range
    for d in expected:
        if d.kind == "CHECK-NOT":
            pending.append(d.text)
            continue
        found = next((i for i in range(at, len(lines)) if d.text in lines[i]), None)
        assert found is not None, f"CHECK not found after line {at + 1}: {d.text!r}\n" + "\n".join(lines)
        _check_absent(lines, at, found, pending)
        pending, at = [], found + 1
    _check_absent(lines, at, len(lines), pending)


def _check_absent(lines: list[str], start: int, stop: int, texts: list[str]) -> None:
    for text in texts:
        hit = next((i for i in range(start, stop) if text in lines[i]), None)
        assert hit is None, f"CHECK-NOT {text!r} found on line {hit + 1}: {lines[hit]!r}"


def updated(source: str, filename: str) -> str:
    """The file with its expectations rewritten from the current output."""
    program = [line for line in source.splitlines() if not DIRECTIVE.match(line.strip())]
    old = directives(source)
    while program and not program[-1].strip():
        program.pop()
    try:
        lines = derivation_lines(source, filename)
    except AttractorError as e:   # the ERROR lines stay while the diagnostic still contains them
        kept = [d.text for d in old if d.kind == "ERROR" and d.text in str(e)]
        return "\n".join(program + [f"# ERROR: {t}" for t in kept or [e.message]]) + "\n"
    # each CHECK-NOT stays after the same-numbered CHECK it followed (0: before the first)
    nots: dict[int, list[str]] = {}
    seen = 0
    for d in old:
        if d.kind == "CHECK":
            seen += 1
        elif d.kind == "CHECK-NOT":
            nots.setdefault(seen, []).append(d.text)
    checks = [line.strip() for line in lines if line.strip().startswith(RECORDED)]
    out = program + [f"# CHECK-NOT: {t}" for t in nots.pop(0, [])]
    for i, text in enumerate(checks, 1):
        out.append(f"# CHECK: {text}")
        out.extend(f"# CHECK-NOT: {t}" for t in nots.pop(i, []))
    out.extend(f"# CHECK-NOT: {t}" for rest in nots.values() for t in rest)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_golden(path: Path, request):
    source = path.read_text()
    filename = str(path.relative_to(GOLDEN.parent.parent))
    if request.config.getoption("--update"):
        path.write_text(updated(source, filename))
        source = path.read_text()
    expected = directives(source)
    errors = [d.text for d in expected if d.kind == "ERROR"]
    assert expected, f"{path.name} states nothing: add CHECK or ERROR lines (pytest --update writes them)"
    if errors:
        with pytest.raises(AttractorError) as failure:
            compile_source(source, filename=filename)
        for text in errors:
            assert text in str(failure.value)
        return
    check_lines(derivation_lines(source, filename), expected)


def test_check_not_is_bounded_by_the_neighbouring_checks():
    lines = ["step 1: a", "  match:   x", "step 2: b", "  match:   y"]
    check_lines(lines, [Directive("CHECK", "step 1"), Directive("CHECK-NOT", "y"), Directive("CHECK", "step 2")])
    with pytest.raises(AssertionError):
        check_lines(lines, [Directive("CHECK", "step 1"), Directive("CHECK-NOT", "match:   x"),
                            Directive("CHECK", "step 2")])
    with pytest.raises(AssertionError):
        check_lines(lines, [Directive("CHECK", "step 2"), Directive("CHECK", "step 1")])   # order matters
