"""What a plan costs before it trains (`rf plan --estimate`): each run's parameters, memory, tokens
and optimizer steps, and with `--calibrate` its wall time, from a few real steps on this machine.

`workload` (tokens and steps, from the data), `memory` (on the meta device, no weights loaded),
`calibration` (real steps of the first runs, through the worker's own code) and `timing` (pure:
the calibrated figures extrapolated to every run and to the sweep, with the policy's expected stops).
"""
