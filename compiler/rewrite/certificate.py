"""A numerical certificate: evidence, from random instances, that a recorded relation holds
(bounds really bound, estimators are unbiased within a confidence interval).

Each rule family keeps its certificates in `passes/<family>/certificates.py`, a dict
`CERTIFICATES = {rule name: fn(compiled_program, step, seed) -> [Certificate]}`; only the
`check` driver loads them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Certificate:
    rule: str
    claim: str
    evidence: str
    passed: bool
