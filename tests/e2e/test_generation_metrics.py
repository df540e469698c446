"""Generation metrics through `rf run`: a metric that raises fails its own run, not the others.

(That every run logs its metrics at every boundary, and that chunked still equals unchunked with them
on, is checked on the shared sweep in test_run_cli.py.)"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from rfcli.store.database import ExperimentStore
from tests.processes import python_path_with

pytestmark = pytest.mark.e2e

USER_METRICS = """
def broken(completions, **kwargs):
    raise ValueError(f"cannot score {len(completions)} completions")
"""


def test_a_metric_that_raises_fails_its_run_alone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rf: Callable[..., subprocess.CompletedProcess[str]],
    write_sweep: Callable[..., Path],
) -> None:
    (tmp_path / "user_metrics.py").write_text(USER_METRICS, encoding="utf-8")
    # rf and its workers import the user's module
    monkeypatch.setenv("PYTHONPATH", python_path_with(tmp_path))
    metrics = {
        "grid": [["recipes.qa_metrics:token_f1"], ["recipes.qa_metrics:token_f1", "user_metrics:broken"]]
    }
    config = write_sweep(
        tmp_path / "sweep.yaml",
        tmp_path / "experiments",
        "broken-metric",
        eval={"metrics": metrics, "generate": {"max_new_tokens": 4, "num_samples": 4}},
    )

    result = rf("run", config, "lora.r=4", "training.learning_rate=1e-3", expect=1)

    assert "failed runs: 2" in result.stdout
    with ExperimentStore(tmp_path / "experiments" / "broken-metric" / "state.db") as store:
        good, bad = store.runs()
        scored = {step for step, key, _ in store.metrics(good.id) if key == "eval_token_f1"}
    assert good.state == "completed" and good.max_steps is not None
    assert scored == {good.max_steps * chunk // 4 for chunk in range(1, 5)}
    assert bad.state == "failed" and bad.chunks_done == 0
    assert bad.error == (
        "MetricError: eval metric 'user_metrics:broken' raised ValueError: cannot score 4 completions "
        "(at user_metrics.py:3)"
    )
