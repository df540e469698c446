"""Finding an experiment's folder from its file before the plan compiles (for the one-controller lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfcli.engine.experiment import named_folder
from rfcli.errors import UserError

QUICKSTART = Path("configs/quickstart.yaml")


def test_the_folder_a_file_names_with_its_overrides() -> None:
    assert named_folder(QUICKSTART, []) == Path("rf-experiments/quickstart")
    assert named_folder(QUICKSTART, ["name=other", "experiments_dir=/tmp/x"]) == Path("/tmp/x/other")


def test_a_file_that_cannot_say_gives_none(tmp_path: Path) -> None:
    assert named_folder(tmp_path / "missing.yaml", []) is None
    assert named_folder(QUICKSTART, ["name=a/b"]) is None
    assert named_folder(QUICKSTART, ["name={grid: [a, b]}"]) is None


def test_the_stored_plan_is_the_plan_the_experiment_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rf run -e NAME`: the runs the file planned (not the clones: the store adds those itself),
    under the policy the last `rf run` steered with, in the folder the store was found in, and
    accepted by the experiment even after a retry changed a run's config in place."""
    from rfcli.config.plan import compile_plan
    from rfcli.config.policy import POLICY_META
    from rfcli.engine import experiment as experiments
    from rfcli.engine.experiment import open_experiment, stored_plan

    # No MLflow here: its store opens on a thread that a later test's fork must not catch mid-import.
    monkeypatch.setattr(experiments, "MlflowTracker", lambda uri, name: None)

    compiled = compile_plan(QUICKSTART, [f"experiments_dir={tmp_path / 'first'}", "policy.name=asha"])
    experiment = open_experiment(compiled)
    store = experiment.store
    store.add_run(5, compiled.runs[0].raw, "fp", name="5 clone of 1", parent_id=1, cause="rf ctl")
    store.set_config(
        2, {**compiled.runs[1].raw, "seed": 7}, fresh_optimizer_step=None
    )  # a retry with an override
    store.set_meta(POLICY_META, '{"name": "sha", "eta": 3}')
    moved = tmp_path / "moved" / "quickstart"
    moved.parent.mkdir()
    experiment.folder.rename(moved)

    plan = stored_plan(moved)
    assert plan.stored and plan.source == "experiment 'quickstart' (planned from configs/quickstart.yaml)"
    assert [run.id for run in plan.runs] == [1, 2, 3, 4]
    assert plan.runs[1].config.seed == 7
    assert {(run.config.policy.name, run.config.policy.eta) for run in plan.runs} == {("sha", 3)}
    assert {run.config.experiments_dir for run in plan.runs} == {str(moved.parent)}
    assert open_experiment(plan).folder == moved  # no 'different plan' for the retried run


def test_continuing_needs_a_plan_source_and_takes_only_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rfcli.cli.app import app

    runner = CliRunner()
    cases = {
        ("run",): "give the experiment file (rf run CONFIG), or -e NAME to continue an experiment",
        ("run", str(QUICKSTART), "-e", "quickstart"): "-e quickstart continues the plan that experiment "
        "stores, so it takes no CONFIG",
        ("run", "-e", "nowhere", "--dir", str(tmp_path)): "no experiment named 'nowhere'",
    }
    for args, message in cases.items():
        result = runner.invoke(app, list(args))
        assert isinstance(result.exception, UserError), result.output
        assert message in str(result.exception)
    assert not any(tmp_path.iterdir())
