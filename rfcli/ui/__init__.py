"""The live terminal view of `rf run`."""
