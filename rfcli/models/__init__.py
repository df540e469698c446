"""Base models and tokenizers: the built-in tiny models and loading any model a config names."""
