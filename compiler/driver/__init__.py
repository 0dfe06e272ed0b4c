"""Drivers: the Python API, the command line, check, explain, field and plotting."""
