"""YAML + overrides -> typed experiment config; search space -> run plan."""
