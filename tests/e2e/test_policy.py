"""Policies end to end through `rf run`: ASHA stops weak runs with explained decisions, PBT replaces
a weak run by a perturbed warm clone whose new learning rate lands, a person overrules a stop, a TPE
search refills the slots ASHA frees and survives a kill -9."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import pytest

from rfcli.store.database import ExperimentStore
from rfcli.tracking.mlflow_tracker import MlflowTracker, tracking_uri_for
from tests.e2e.conftest import run_rf, sweep_config, write_yaml
from tests.e2e.test_control import start_rf, wait_for

pytestmark = pytest.mark.e2e
LEARNING_RATES = [3.0e-3, 1.0e-3, 3.0e-4, 1.0e-4]  # best first on this data, so ASHA's order matters


def policy_sweep(experiments: Path, name: str, policy: dict[str, Any], ranks: list[int]) -> dict[str, Any]:
    """len(ranks) x 4 learning rates of rf-tiny, 72 rows (64 train, 8 eval: 8 steps in 4 chunks)."""
    config = sweep_config(experiments, name)
    config["data"]["train"]["select"] = 72
    config["lora"]["r"] = {"grid": ranks} if len(ranks) > 1 else ranks[0]
    config["lora"]["lora_dropout"] = 0.0
    config["training"].update({"learning_rate": {"grid": LEARNING_RATES}, "warmup_steps": 0})
    config["policy"] = policy
    return config


def learning_rates(store: ExperimentStore, run_id: int) -> dict[int, float]:
    return {step: value for step, key, value in store.metrics(run_id) if key == "learning_rate"}


def test_asha_stops_weak_runs_early_with_explained_decisions(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    policy = {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 2}
    config = write_yaml(tmp_path / "asha.yaml", policy_sweep(experiments, "asha", policy, [4, 8]))
    plan = run_rf("plan", config, expect=0)
    assert "policy: asha on eval_loss (min): the best 1/2 go on" in plan.stdout
    run_rf("run", config, expect=0)
    folder = experiments / "asha"

    with ExperimentStore(folder / "state.db") as store:
        runs = {run.id: run for run in store.runs()}
        events = store.events(limit=500)
        at_chunk_2 = {
            run_id: values[2] for run_id, values in store.chunk_values("eval_loss").items() if 2 in values
        }
    by_policy = [e for e in events if e.cause == "policy" and e.run_id is not None]
    stopped = {e.run_id for e in by_policy if e.kind == "stopped" and e.run_id is not None}
    explained = {e.run_id: e.detail or "" for e in by_policy if e.kind == "decision" and e.run_id is not None}
    assert len(stopped) >= 3 and stopped == set(explained)
    for detail in explained.values():
        assert " ranks " in detail and " of " in detail and "cutoff" in detail and detail.endswith(": stop")
    assert all(runs[run_id].state == "stopped" for run_id in stopped)
    trained = sum(run.chunks_done for run in runs.values())
    assert trained <= 0.6 * 4 * len(runs), f"{trained} chunks of {4 * len(runs)}"
    best = min(at_chunk_2, key=lambda run_id: at_chunk_2[run_id])  # type: ignore[arg-type, return-value]
    assert runs[best].state == "completed", "the best run at the last rung trains to its end"

    status = json.loads(run_rf("status", "--dir", experiments, "asha", "--json", expect=0).stdout)
    stops = [d for d in status["policy"]["decisions"] if d["verb"] == "stop"]
    assert {d["run_id"] for d in stops} == stopped
    assert all(d["rank"] > 1 and d["cohort"] >= 2 and d["cutoff"] is not None for d in stops)
    table = run_rf("status", "--dir", experiments, "asha", expect=0).stdout
    assert "policy: asha on eval_loss" in table and "stop" in table
    victim = runs[min(stopped)]
    assert victim.mlflow_run_id is not None
    tags = MlflowTracker(tracking_uri_for(folder), "asha")._client.get_run(victim.mlflow_run_id).data.tags
    assert tags["rf.policy.decision"] == "stop" and tags["rf.stop_cause"] == "policy"


def test_pbt_replaces_a_weak_run_by_a_warm_clone_whose_new_learning_rate_lands(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    policy = {"name": "pbt", "interval": 2, "quantile": 0.25, "resample_probability": 0.0}
    config = write_yaml(tmp_path / "pbt.yaml", policy_sweep(experiments, "pbt", policy, [8]))
    run_rf("run", config, expect=0)
    folder = experiments / "pbt"

    with ExperimentStore(folder / "state.db") as store:
        (replace,) = [r.decision for r in store.decisions() if r.decision.acts]
        runs = {run.id: run for run in store.runs()}
        (clone,) = [run for run in runs.values() if run.parent_id is not None]
        clone_lr, parent_lr = learning_rates(store, clone.id), learning_rates(store, clone.parent_id)  # type: ignore[arg-type]
        events = store.events(limit=500)
    assert (replace.verb, replace.rung, replace.parent_id) == ("replace", 2, clone.parent_id)
    assert runs[replace.run_id].state == "stopped" and clone.state == "completed" and clone.warm_start
    (new_lr,) = replace.changes.values()
    old_lr = runs[clone.parent_id].config["training"]["learning_rate"]  # type: ignore[index]
    factor = new_lr / old_lr
    assert clone.config["training"]["learning_rate"] == new_lr
    assert math.isclose(factor, 0.8) or math.isclose(factor, 1.2)
    # The clone continues from its parent's step with the new learning rate on the same schedule.
    assert min(clone_lr) > 1 and set(clone_lr) <= set(parent_lr)
    for step, value in clone_lr.items():
        assert math.isclose(value, parent_lr[step] * factor, rel_tol=1e-6), f"step {step}"
    created = [e for e in events if e.run_id == clone.id and e.kind == "created"]
    assert created[0].cause == "policy" and f"clone of run {clone.parent_id}" in (created[0].detail or "")

    # A person overrules the policy: the replaced run trains on, and is not judged again at chunk 2.
    ctl = ["--dir", str(experiments), "--experiment", "pbt"]
    run_rf("ctl", "resume", str(replace.run_id), *ctl, "--wait", "0", expect=0)
    run_rf("run", config, expect=0)
    with ExperimentStore(folder / "state.db") as store:
        assert store.run(replace.run_id).state == "completed"
        assert [r.decision.rung for r in store.decisions(replace.run_id)] == [2]
        assert [
            e.kind for e in reversed(store.events(limit=500, run_id=replace.run_id)) if e.cause == "policy"
        ] == [
            "decision",
            "stopped",
        ]


def proposals(folder: Path) -> list[tuple[int, int | None, str]]:
    if not (folder / "state.db").exists():
        return []
    with ExperimentStore(folder / "state.db") as store:
        return [(p.number, p.run_id, json.dumps(p.params, sort_keys=True)) for p in store.proposals()]


def test_a_tpe_search_refills_each_stopped_slot_and_a_kill_9_neither_loses_nor_repeats_a_proposal(
    tmp_path: Path,
) -> None:
    experiments = tmp_path / "experiments"
    asha = {"name": "asha", "metric": "eval_loss", "mode": "min", "eta": 2}
    config = policy_sweep(experiments, "tpe", asha, [4])
    config["lora"]["r"] = {"choice": [4, 8, 16]}
    config["training"]["learning_rate"] = {"loguniform": [1.0e-4, 1.0e-2]}
    config["search"] = {"method": "tpe", "num_samples": 6, "concurrent": 3}
    path = write_yaml(tmp_path / "tpe.yaml", config)
    folder = experiments / "tpe"

    process = start_rf("run", path)
    wait_for(lambda: len(proposals(folder)) >= 4, "a slot refilled after a stop")
    before = proposals(folder)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL, "rf run ended before it was killed"
    run_rf("run", path, expect=0)

    after = proposals(folder)
    assert after[: len(before)] == before  # nothing lost, nothing proposed again
    assert [number for number, _, _ in after] == [1, 2, 3, 4, 5, 6] and len({p for _, _, p in after}) == 6
    with ExperimentStore(folder / "state.db") as store:
        runs = store.runs()
        created = {e.run_id: e for e in store.events(limit=1000) if e.kind == "created"}
        stops = [e for e in reversed(store.events(limit=1000)) if e.cause == "policy" and e.kind == "stopped"]
    assert sorted(run.id for run in runs) == [run_id for _, run_id, _ in after]  # a run for each, once
    assert all(created[run.id].cause == "search" and created[run.id].detail for run in runs)
    assert created[4].detail.startswith(("TPE from", "QMC start, 4:"))  # type: ignore[union-attr]
    assert stops and stops[0].time < created[4].time  # the fourth took a stopped run's slot
    assert {run.state for run in runs} <= {"completed", "stopped"} and any(
        r.state == "completed" for r in runs
    )

    report = json.loads(run_rf("report", "tpe", "--dir", experiments, "--json", expect=0).stdout)
    audit = report["stops_audit"]
    assert audit["winner"] in {run.id for run in runs if run.state == "completed"}
    assert audit["rungs"][0]["rung"] == 1  # ASHA's first rung, where it stopped runs
