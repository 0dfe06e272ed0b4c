"""Regenerate the compiler output embedded in the docs pages.

A page marks a block with `<!-- attractor compile FILE ARGS -->` followed by a fenced code
block; `python docs/build.py` rewrites every such block with what the compiler prints today.
tests/test_docs.py fails when a page is stale.

The blocks are printed in rule order (ATTRACTOR_NO_SEARCH set while they run): the search among
derivations (SPEC 9.4) times each candidate on the machine at hand, so its notes ("chosen by
measuring ...") would make a page depend on where it was built.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- attractor (?P<args>[^>]*?) -->\n```[a-z]*\n)(?P<body>.*?)(```)", re.S)


def output(args: str) -> str:
    """What `attractor ARGS` prints (run in process, from the repository root)."""
    import contextlib
    import io
    import os

    from compiler.driver.api import NO_SEARCH_VARIABLE
    from compiler.driver.cli import main
    out = io.StringIO()
    cwd = os.getcwd()
    before = os.environ.get(NO_SEARCH_VARIABLE)
    os.chdir(ROOT)
    os.environ[NO_SEARCH_VARIABLE] = "1"
    try:
        with contextlib.redirect_stdout(out):
            code = main(shlex.split(args))
    finally:
        os.chdir(cwd)
        if before is None:
            del os.environ[NO_SEARCH_VARIABLE]
        else:
            os.environ[NO_SEARCH_VARIABLE] = before
    if code != 0:
        raise RuntimeError(f"attractor {args} exited {code}")
    return out.getvalue()


def refresh(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + output(m.group("args")) + m.group(4), text)


def pages() -> list[Path]:
    return sorted(p for p in (ROOT / "docs").glob("*.md") if BLOCK.search(p.read_text()))


if __name__ == "__main__":
    for page in pages():
        new = refresh(page.read_text())
        if new != page.read_text():
            page.write_text(new)
            print(f"updated {page.relative_to(ROOT)}")
    sys.exit(0)
