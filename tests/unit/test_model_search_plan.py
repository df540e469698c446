"""The plan of a model-based search: its first proposals (the ones the sweep then makes), its bad
inputs refused before anything is written, its priors read from earlier experiments, every trainer."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from rfcli.config.errors import ConfigError
from rfcli.config.plan import compile_plan
from rfcli.config.policy import POLICY_META
from rfcli.engine.refill import Refill
from rfcli.search.proposer import SEARCH_META
from rfcli.store.database import CHUNK_KEY, ExperimentStore
from tests.unit.test_plan import write_config

TPE = ["search.method=tpe", "search.num_samples=6", "search.concurrent=3"]
LR_RANGE = "training.learning_rate={loguniform: [1.0e-4, 1.0e-2]}"


def test_a_model_based_plan_starts_with_one_proposal_per_slot(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    plan = compile_plan(path, [*TPE, LR_RANGE, "lora.r={choice: [4, 8, 16]}"])
    assert plan.search is not None and (plan.search.num_samples, plan.search.concurrent) == (6, 3)
    assert [run.id for run in plan.runs] == [1, 2, 3]
    assert plan.varying_keys() == ["lora.r", "training.learning_rate"]
    assert all(
        run.config.search.method == "tpe" and run.config.training["max_steps"] == 10 for run in plan.runs
    )
    again = compile_plan(path, [*TPE, LR_RANGE, "lora.r={choice: [4, 8, 16]}"])
    assert [run.raw for run in again.runs] == [run.raw for run in plan.runs]


def test_the_sweep_begins_with_the_proposals_its_plan_shows(tmp_path: Path) -> None:
    plan = compile_plan(write_config(tmp_path), [*TPE, LR_RANGE, "lora.r={choice: [4, 8, 16]}"])
    assert plan.search is not None
    with ExperimentStore(tmp_path / "state.db") as store:
        store.set_meta(SEARCH_META, plan.search.to_json())
        store.set_meta(POLICY_META, json.dumps(asdict(plan.runs[0].config.policy)))
        Refill(store).fill_free_slots()
        stored = [run.config for run in store.runs()]
    planned = [run.raw for run in plan.runs]
    assert [{**config, "policy": None} for config in stored] == [{**raw, "policy": None} for raw in planned]


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["search.method=tpe", LR_RANGE], "search.num_samples", "tpe search needs num_samples"),
        ([*TPE, "training.learning_rate=1.0e-3"], "search.method", "fixed values only"),
        (["search.method=cmaes", "search.num_samples=4", "lora.r={choice: [4, 8]}"], "lora.r", "CMA-ES"),
        (
            [
                "search.method=gp",
                "search.num_samples=5",
                "lora.r={choice: [4, 8]}",
                "training.learning_rate=1",
            ],
            "search.num_samples",
            "holds only 2",
        ),
        ([*TPE, LR_RANGE, "search.concurrent=0"], "search.concurrent", "an integer from 1 to 1000"),
        ([*TPE, LR_RANGE, "search.mode=up"], "search.mode", "min or max"),
        (["search.concurrent=4"], "search.concurrent", "grid search plans every run up front"),
        (["search.seed=3"], "search.seed", "grid search draws nothing"),
        (["search.budget=40"], "search.budget", "grid search plans every run up front"),
        ([*TPE, LR_RANGE, "search.budget=0"], "search.budget", "chunk-units to spend"),
        ([*TPE, LR_RANGE, "search.prior=[nowhere]"], "search.prior[0]", "no experiment named 'nowhere'"),
        ([*TPE, LR_RANGE, "search.prior=[unit]"], "search.prior[0]", "names this experiment itself"),
        ([*TPE, LR_RANGE, "lora.lora_dropout={uniform: [0.5, 1.0]}"], "lora.lora_dropout", "got 1.0"),
    ],
)
def test_bad_search_settings_are_refused_when_the_plan_is_compiled(
    tmp_path: Path, overrides: list[str], key: str, message: str
) -> None:
    path = write_config(tmp_path)
    with pytest.raises(ConfigError) as raised:
        compile_plan(path, [*overrides, f"experiments_dir={tmp_path / 'x'}"])
    assert (raised.value.key, raised.value.source) == (key, str(path)), str(raised.value)
    assert message in str(raised.value)


def prior_experiment(experiments: Path, runs: dict[int, tuple[dict[str, Any], list[float]]]) -> None:
    """An experiment 'old' whose runs recorded these eval losses at chunks 1, 2, ..."""
    with ExperimentStore(experiments / "old" / "state.db") as store:
        for run_id, (config, losses) in runs.items():
            store.add_run(run_id, config, f"fp{run_id}", name=str(run_id), cause="plan")
            for chunk, loss in enumerate(losses, start=1):
                rows = [(chunk, CHUNK_KEY, float(chunk)), (chunk, "eval_loss", loss)]
                store.record_chunk(run_id, chunks_done=chunk, global_step=chunk, checkpoint="c", metrics=rows)


def test_a_prior_experiments_best_run_is_proposed_first(tmp_path: Path) -> None:
    experiments = tmp_path / "x"

    def config(lr: float, r: int, trainer: str = "sft") -> dict[str, Any]:
        return {"trainer": trainer, "training": {"learning_rate": lr, "max_steps": 64}, "lora": {"r": r}}

    prior_experiment(
        experiments,
        {
            1: (config(1e-3, 8), [3.0, 2.0]),
            2: (config(3e-3, 16), [2.5, 1.5]),  # the best at the deepest chunk
            3: (config(5e-3, 4), [1.0]),  # the best at chunk 1 only: stopped there
            4: (config(0.5, 8), [0.1, 0.1]),  # outside the space: left out
        },
    )
    path = write_config(tmp_path)
    space = [LR_RANGE, "lora.r={choice: [4, 8, 16]}", f"experiments_dir={experiments}"]
    overrides = [*TPE, *space, "search.prior=[old]"]
    plan = compile_plan(path, overrides)
    first = plan.runs[0].config
    assert (first.training["learning_rate"], first.lora["r"], first.training["max_steps"]) == (3e-3, 16, 10)  # type: ignore[index]
    assert len(plan.prior.observations) == 3 and plan.prior.best[0].detail == (
        "best of prior experiment old: eval_loss 1.5 at chunk 2"
    )
    prior_experiment(experiments, {5: (config(1e-3, 8, trainer="dpo"), [1.0])})
    with pytest.raises(ConfigError, match="trains with trainer dpo, this one with sft"):
        compile_plan(path, overrides)


@pytest.mark.parametrize("config", ["quickstart-dpo.yaml", "quickstart-grpo.yaml"])
def test_every_trainer_plans_a_model_based_search(config: str) -> None:
    plan = compile_plan(Path("configs") / config, [*TPE, LR_RANGE])
    assert len(plan.runs) == 3 and len({run.config.training["learning_rate"] for run in plan.runs}) == 3


def test_a_damaged_prior_experiment_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "x" / "old").mkdir(parents=True)
    (tmp_path / "x" / "old" / "state.db").write_bytes(b"not a database" * 100)
    overrides = [*TPE, LR_RANGE, "search.prior=[old]", f"experiments_dir={tmp_path / 'x'}"]
    with pytest.raises(ConfigError, match="cannot read experiment 'old'") as raised:
        compile_plan(write_config(tmp_path), overrides)
    assert raised.value.key == "search.prior[0]"
