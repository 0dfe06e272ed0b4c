"""attractor: a compiler for machine-learning objectives."""
from compiler.api import CompiledProgram, compile_file, compile_source
from compiler.diagnostics import AttractorError

__all__ = ["AttractorError", "CompiledProgram", "compile_file", "compile_source"]
