"""The experiment's state store: one SQLite file with its runs, their progress and metrics, the
control commands `rf ctl` sends, and an event for every change of a run's state.

Standard library only, so `rf status` and `rf ctl` answer in milliseconds.
"""
