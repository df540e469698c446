"""The audit of a sweep's stops (rfcli/results/audit.py), from a store written by hand: how well
each rung's order foretold the final one, the stops ahead of the winner, a dry run's would-be stops."""

from __future__ import annotations

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from rfcli.cli.app import app
from rfcli.config.policy import POLICY_META
from rfcli.policy.decisions import Decision
from rfcli.results.audit import audit_stops
from rfcli.store.database import CHUNK_KEY, ExperimentStore

ASHA = {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 2}


def sweep(path: Path, losses: dict[int, list[float]], policy: dict[str, object] = ASHA) -> ExperimentStore:
    """Runs with these eval losses at chunks 1, 2, ...: with all 4 chunks completed, else stopped."""
    store = ExperimentStore(path)
    store.set_meta(POLICY_META, json.dumps(policy))
    for run_id, values in losses.items():
        store.add_run(run_id, {"trainer": "sft"}, f"fp{run_id}", name=str(run_id), cause="plan")
        store.set_plan_totals(run_id, 4, 8)
        for chunk, value in enumerate(values, start=1):
            store.set_state(run_id, "running", cause="scheduler", worker=0)
            rows = [
                (2 * chunk, CHUNK_KEY, float(chunk)),
                (2 * chunk, "eval_loss", value),
                (2 * chunk, "loss", 4.0),
            ]
            store.record_chunk(run_id, chunks_done=chunk, global_step=2 * chunk, checkpoint="c", metrics=rows)
            store.set_state(run_id, "completed" if chunk == 4 else "ready", cause="scheduler")
        if len(values) < 4:
            store.set_state(run_id, "stopped", cause="policy")
    return store


def stop(store: ExperimentStore, run_id: int, rung: int, value: float, dry_run: bool = False) -> None:
    decision = Decision(run_id, rung, "stop", "eval_loss", value, 6, 5, 2.0, "why")
    store.record_decision(decision, dry_run=dry_run, commands=[])


FINISHED = {
    1: [3.0, 2.5, 2.2, 2.0],  # the winner
    2: [3.2, 2.7, 2.4, 2.1],
    3: [3.1, 2.8, 2.6, 2.3],  # ahead of run 2 at chunk 1, behind at the end
    4: [3.5, 3.0, 2.8, 2.6],
}


def test_each_rung_is_scored_by_how_well_its_order_foretold_the_final_one(tmp_path: Path) -> None:
    with sweep(tmp_path / "state.db", {**FINISHED, 5: [2.9]}) as store:
        stop(store, 5, 1, 2.9)  # ahead of the winner's 3.0 when it was stopped
        stop(store, 4, 2, 3.0, dry_run=True)
        audit = audit_stops(store)
    assert (audit.winner, audit.winner_final) == (1, 2.0)
    (chunk_1, chunk_2) = audit.rungs  # the rungs decisions were taken at
    assert (chunk_1.rung, chunk_1.runs) == (1, 4)
    assert math.isclose(chunk_1.spearman or 0, 0.8)  # ranks 1 3 2 4 against 1 2 3 4: 1 - 6 * 2 / 60
    assert (chunk_2.rung, chunk_2.spearman) == (2, 1.0)
    (ahead,) = audit.ahead_of_winner
    assert (ahead.run_id, ahead.rung, ahead.value, ahead.winner_value) == (5, 1, 2.9, 3.0)
    (would,) = audit.would_have_stopped
    assert (would.run_id, would.final_rank) == (4, 4)
    lines = audit.lines()
    assert lines[0] == "stops audit on eval_loss (min), winner run 1 (2):"
    assert "  run 5 was stopped at chunk 1 ahead of the winner (2.9 against 3)" in lines
    assert "  dry run: the policy would have stopped run 4 at chunk 2; it finished 4 of those" in lines[-1]


def test_a_dry_run_that_would_have_stopped_the_winner_says_so(tmp_path: Path) -> None:
    with sweep(tmp_path / "state.db", FINISHED, {**ASHA, "dry_run": True}) as store:
        stop(store, 1, 1, 3.0, dry_run=True)
        audit = audit_stops(store)
    assert audit.ahead_of_winner == [] and audit.would_have_stopped[0].final_rank == 1
    assert audit.lines()[-1] == "  dry run: the policy would have stopped run 1 at chunk 1; the winner"


def test_the_policys_mode_decides_the_winner_and_json_has_no_nan(tmp_path: Path) -> None:
    maximizing = {**ASHA, "mode": "max"}
    with sweep(tmp_path / "state.db", {**FINISHED, 6: [math.nan]}, maximizing) as store:
        stop(store, 6, 1, math.nan)
        audit = audit_stops(store)
    assert audit.winner == 4 and audit.ahead_of_winner == []  # a NaN is ahead of nothing
    assert json.loads(json.dumps(audit.to_json(), allow_nan=False))["winner"] == 4


def test_without_a_finished_run_there_is_nothing_to_audit(tmp_path: Path) -> None:
    with sweep(tmp_path / "state.db", {1: [3.0], 2: [2.0]}) as store:
        audit = audit_stops(store)
    assert audit.winner is None and audit.lines() == [
        "stops audit: no run has trained to its end with a number for eval_loss yet"
    ]


def test_rf_report_prints_the_audit_and_its_json(tmp_path: Path) -> None:
    sweep(tmp_path / "audited" / "state.db", {**FINISHED, 5: [2.9]}).close()
    with ExperimentStore(tmp_path / "audited" / "state.db") as store:
        stop(store, 5, 1, 2.9)
    runner = CliRunner()
    out = runner.invoke(app, ["report", "audited", "--dir", str(tmp_path), "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    assert "run 5 was stopped at chunk 1 ahead of the winner" in out.output
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "## Stops audit" in summary and "| 1 | 4 | 0.80 |" in summary
    out = runner.invoke(
        app, ["report", "audited", "--dir", str(tmp_path), "--out", str(tmp_path / "r"), "--json"]
    )
    document = json.loads(out.output)
    assert document["stops_audit"]["ahead_of_winner"][0]["run_id"] == 5 and document["best"]["run_id"] == 1
