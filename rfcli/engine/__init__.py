"""The engine: the scheduler (pure), the controller loop that applies commands and dispatches
chunks, and the workers that train them."""
