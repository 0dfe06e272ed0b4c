"""Rewriting: rules, the pass manager that owns cross-rule policy, traversal strategies, the derivation record."""
