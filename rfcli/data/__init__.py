"""Training and evaluation data: load the configured sources, format them, check their columns."""
