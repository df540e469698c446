"""`tracking.resync.compare`: what an MLflow run lacks or holds wrongly beside the store's rows."""

from __future__ import annotations

import math

from rfcli.tracking.resync import compare

STORE = [(1, "loss", 2.0), (1, "lr", 1e-3), (2, "loss", 1.5), (2, "lr", 1e-3)]


def test_rows_mlflow_lacks_are_sent_in_order() -> None:
    outcome = compare(STORE, [(1, "loss", 2.0), (2, "lr", 1e-3)])
    assert outcome.missing == [(1, "lr", 1e-3), (2, "loss", 1.5)] and not outcome.replace


def test_mlflow_holding_exactly_the_stores_rows_needs_nothing() -> None:
    outcome = compare(STORE, list(reversed(STORE)))
    assert outcome.missing == [] and outcome.extra == []


def test_a_step_logged_twice_replaces_the_run() -> None:
    outcome = compare(STORE, [*STORE, (2, "loss", 1.5)])
    assert outcome.extra == [(2, "loss", 1.5)] and outcome.replace


def test_a_value_the_store_does_not_hold_replaces_the_run() -> None:
    assert compare(STORE, [(2, "loss", math.nan)]).extra == [(2, "loss", math.nan)]
    assert compare(STORE, [(3, "loss", 1.0)]).extra == [(3, "loss", 1.0)]  # a step the store dropped
    assert compare(STORE, [(1, "eval_loss", 1.0)]).replace  # a key the store does not have


def test_nan_matches_nan_and_mlflow_keeps_infinity_as_the_largest_float() -> None:
    stored = [(1, "loss", math.nan), (2, "loss", math.inf), (3, "loss", -math.inf)]
    logged = [
        (1, "loss", math.nan),
        (2, "loss", 1.7976931348623157e308),
        (3, "loss", -1.7976931348623157e308),
    ]
    assert compare(stored, logged).extra == []
    assert compare(stored, [(2, "loss", -1.7976931348623157e308)]).replace
