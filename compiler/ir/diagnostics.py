"""Diagnostics: every user error is `FILE:LINE:COL: error: message`, the line, a caret."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A 1-based source position."""

    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


class AttractorError(Exception):
    """The one exception type the compiler raises for anything a user wrote.

    `str(err)` is the full diagnostic the command line prints.
    """

    def __init__(self, message: str, loc: Loc | None = None, filename: str = "<input>",
                 source: str | None = None):
        self.message = message
        self.loc = loc
        self.filename = filename
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        if self.loc is None:
            return f"{self.filename}: error: {self.message}"
        head = f"{self.filename}:{self.loc.line}:{self.loc.col}: error: {self.message}"
        lines = (self.source or "").splitlines()
        if not 1 <= self.loc.line <= len(lines):
            return head
        text = lines[self.loc.line - 1].replace("\t", " ")
        caret = " " * (self.loc.col - 1) + "^"
        return f"{head}\n    {text}\n    {caret}"

    def located(self, filename: str, source: str) -> "AttractorError":
        """The same error, attached to a file (used once the caller knows it)."""
        return AttractorError(self.message, self.loc, filename, source)

    def __str__(self) -> str:
        return self.render()


def error(message: str, loc: Loc | None = None) -> AttractorError:
    return AttractorError(message, loc)
