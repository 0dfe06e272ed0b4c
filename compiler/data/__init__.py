"""Data sets named after `from`, and npz/csv loaders."""
