"""One small module per command: parse, call the layers below, print."""
