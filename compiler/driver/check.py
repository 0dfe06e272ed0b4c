"""`attractor check`: numerical certificates of every recorded relation.

The certificates of each rule family live in `passes/<family>/certificates.py` (a dict
`CERTIFICATES`); this driver loads them, and runs the certificate of every rule the
derivation used, once per rule. A step whose rule has no certificate fails the check.
"""
from __future__ import annotations

from typing import Callable

from compiler.rewrite.certificate import Certificate

CERTIFICATES: dict[str, Callable] = {}   # TRANSITIONAL registry, filled by @certificate in passes/*.py


def certificate(rule: str):
    """TRANSITIONAL: register fn as the certificate of `rule`."""
    def register(fn):
        CERTIFICATES[rule] = fn
        return fn
    return register


def certify(prog, seed: int = 0) -> list[Certificate]:
    """Run the certificate of every rule the derivation used, once per rule."""
    out: list[Certificate] = []
    seen: set[str] = set()
    for step in prog.steps.steps:
        if step.rule in seen:
            continue
        seen.add(step.rule)
        fn = CERTIFICATES.get(step.rule)
        if fn is None:
            out.append(Certificate(step.rule, f"relation {step.relation}", "no certificate is registered for this rule", False))
            continue
        out.extend(fn(prog, step, seed))
    return out
