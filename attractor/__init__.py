"""attractor: a compiler for machine-learning objectives.

    from attractor import compile_file, compile_source
    prog = compile_file("examples/vae.att")
    prog.ir, prog.derivation, prog.field      # printable; .to_json(), .to_latex()
    mod = prog.build()                        # the emitted module, imported
    params, history = mod.fit(prog.load_data(), steps=3000, seed=0)
"""
from compiler.driver.api import CompiledProgram, compile_file, compile_source
from compiler.ir.diagnostics import AttractorError

__all__ = ["AttractorError", "CompiledProgram", "compile_file", "compile_source"]
