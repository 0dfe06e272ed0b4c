"""`attractor check`: numerical certificates of every recorded relation.

Rule families register a certificate per rule with `@certificate("rule")`; each returns
`Certificate`s from random instances (bounds really bound, estimators are unbiased within
a confidence interval). A step whose rule has no certificate fails the check.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

CERTIFICATES: dict[str, Callable] = {}


@dataclass(frozen=True)
class Certificate:
    rule: str
    claim: str
    evidence: str
    passed: bool


def certificate(rule: str):
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
