"""What a person does after a sweep: curves, comparisons, the best run's adapter, the experiments list."""
