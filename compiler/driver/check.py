"""`attractor check`: numerical certificates of every recorded relation.

The certificates of each rule family live in `passes/<family>/certificates.py` (a dict
`CERTIFICATES`); this driver loads them, and runs the certificate of every rule the
derivation used, once per rule. A step whose rule has no certificate fails the check.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

import passes
from compiler.rewrite.certificate import Certificate


def family_certificates() -> dict[str, Callable]:
    """Every rule's certificate, by rule: `CERTIFICATES` of passes/<family>/certificates.py
    for each family in `passes.FAMILIES` (loaded here only, never by the compiler)."""
    table: dict[str, Callable] = {}
    for family in passes.FAMILIES:
        table.update(importlib.import_module(f"passes.{family}.certificates").CERTIFICATES)
    return table


def certify(prog, seed: int = 0) -> list[Certificate]:
    """Run the certificate of every rule the derivation used, once per rule."""
    certificates = family_certificates()
    out: list[Certificate] = []
    seen: set[str] = set()
    for step in prog.derivation.steps:
        if step.rule in seen:
            continue
        seen.add(step.rule)
        fn = certificates.get(step.rule)
        if fn is None:
            out.append(Certificate(step.rule, f"relation {step.relation}", "no certificate is registered for this rule", False))
            continue
        out.extend(fn(prog, step, seed))
    return out
