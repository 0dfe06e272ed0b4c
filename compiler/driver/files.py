"""Files the command line writes and reads: output paths checked before any work, atomic writes.

Paths on the command line (`--data`, `--params`, `--save`, `-o`, `--checkpoint`) are relative to
the working directory; paths inside a program (`from npz("...")`, `python("nets.py:f")`) are
relative to the program file's folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from compiler.ir.diagnostics import AttractorError


def output_path(path: str, option: str, program: str | None = None) -> Path:
    """Where an output file goes, checked before any work: not the program itself, not a
    folder, in a folder that exists and can be written."""
    out = Path(path)
    if program is not None and out.exists() and out.resolve() == Path(program).resolve():
        raise AttractorError(f"the output {path} is the program file itself; choose another name", None, option)
    if out.is_dir() or str(path).endswith(("/", os.sep)):
        raise AttractorError(f"{path} is a folder; give a file name", None, option)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise AttractorError(f"the folder {parent} does not exist", None, option)
    if not os.access(parent, os.W_OK):
        raise AttractorError(f"the folder {parent} is not writable", None, option)
    return out


def write_atomically(path: Path, option: str, write) -> None:
    """`write(temporary_path)`, then rename it over `path`: a failed write (a full disk, an
    interrupt) leaves any earlier file whole. The temporary keeps `path`'s suffix."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise AttractorError(f"cannot write {path}: {e.strerror or e}", None, option) from None
    finally:
        if tmp.exists():
            tmp.unlink()
