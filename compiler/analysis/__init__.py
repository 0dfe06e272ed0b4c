"""Analyses of the typed IR: what is intractable and why, constant folding, dependence."""
