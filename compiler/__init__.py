"""The attractor compiler, one package per stage, each layer importing only those below it:

    ir → analysis, math, data → frontend → rewrite → backend → (passes) → driver

The public import name is `attractor` (`from attractor import compile_file`).
"""
