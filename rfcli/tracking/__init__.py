"""Experiment tracking: every rf run is logged as one MLflow run (see `mlflow_tracker`).

Nothing here imports MLflow at module level: `import mlflow` takes about 1.3 s, and commands such
as `rf status` must stay fast. The tracker imports it when it is first built.
"""
