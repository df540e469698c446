"""The results layer: what sets runs apart, each run's curves and ending, ranking, the summary, the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rfcli.errors import NotFoundError
from rfcli.results.experiment import load_results
from rfcli.results.figure import loss_figure
from rfcli.results.settings import differing_settings, settings_label, short_keys
from rfcli.results.summary import summary_markdown
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import ExperimentLayout
from tests.unit.results_fixtures import write_sweep


def test_only_the_settings_that_differ_are_kept_in_file_order() -> None:
    configs = {
        1: {"lora": {"r": 8, "lora_alpha": 16}, "training": {"learning_rate": 1e-3}, "seed": 0},
        2: {"lora": {"r": 32, "lora_alpha": 16}, "training": {"learning_rate": 3e-3}, "seed": 0},
    }
    settings = differing_settings(configs)
    assert settings == {
        1: {"lora.r": "8", "training.learning_rate": "0.001"},
        2: {"lora.r": "32", "training.learning_rate": "0.003"},
    }
    assert settings_label(settings[2]) == "r=32 lr=0.003"


def test_short_keys_keep_the_whole_key_when_two_would_clash() -> None:
    assert short_keys(["lora.r", "model.kwargs.r", "training.lora_alpha", "seed"]) == {
        "lora.r": "lora.r",
        "model.kwargs.r": "model.kwargs.r",
        "training.lora_alpha": "alpha",
        "seed": "seed",
    }


def test_runs_load_with_curves_outcomes_and_ranking(tmp_path: Path) -> None:
    results = load_results(write_sweep(tmp_path))
    outcomes = {result.run.id: result.outcome for result in results.runs}
    assert outcomes == {1: "completed", 2: "stopped by policy", 3: "completed", 4: "failed"}
    assert [result.run.id for result in results.ranked("eval_loss", "min")] == [2, 3, 1]  # 4's is NaN
    run2 = results.run(2)
    assert run2.label == "2 r=8 lr=0.003"
    assert [step for step, _ in run2.curves["loss"]] == list(range(1, 9))


def test_runs_rank_lowest_or_highest_first_as_told(tmp_path: Path) -> None:
    results = load_results(write_sweep(tmp_path))
    lowest = [result.run.id for result in results.ranked("loss", "min")]
    assert lowest == [3, 1, 2]  # 1 and 2 both end at 2.2: in run order
    assert [result.run.id for result in results.ranked("loss", "max")] == [1, 2, 3]
    assert results.ranked("reward", "max") == []  # nobody logged it
    losses = [results.run(run_id).latest["loss"] for run_id in lowest]
    assert losses == sorted(losses) and 4 not in lowest  # its last loss is NaN


def test_an_unknown_run_names_the_runs_there_are(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="experiment 'sweep' has no run 9; its runs are: 1, 2, 3, 4"):
        load_results(write_sweep(tmp_path)).run(9)
    with pytest.raises(NotFoundError, match="no run 9 in .*its runs are 1-4"):
        load_results(write_sweep(tmp_path / "b"), [1, 9])


def test_summary_names_the_best_run_and_every_checkpoint(tmp_path: Path) -> None:
    markdown = summary_markdown(load_results(write_sweep(tmp_path)), "losses.png")
    assert "![training and eval loss against step](losses.png)" in markdown
    assert "Best run by eval loss: **run 2** (r=8 lr=0.003), eval loss 2.1 at step 8" in markdown
    assert "runs/2/checkpoints/checkpoint-8" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0] == "| run | r | lr | state | step | loss | eval loss | last checkpoint |"
    assert rows[3].startswith("| 2 | 8 | 0.003 | stopped by policy | 8/16 |")
    assert rows[5].startswith("| 4 | 32 | 0.003 | failed | 8/16 | - | - |")


def warn(folder: Path, run_id: int, text: str) -> None:
    with ExperimentStore(folder / "state.db") as store:
        store.add_event(run_id, "warning", cause="rf run", detail=text)


def test_a_best_run_with_a_warning_is_never_called_best_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_sweep(tmp_path)
    warn(folder, 2, "no learning signal in chunk 1: the loss was 0 at every step")
    results = load_results(folder)
    markdown = summary_markdown(results, "losses.png")
    assert (
        "Best run by eval loss: **run 2** (r=8 lr=0.003), eval loss 2.1 at step 8; its last checkpoint is "
        f"`{results.run(2).run.checkpoint}`. **But it has a warning:** no learning signal in chunk 1"
    ) in markdown
    assert "## Warnings\n\n- run 2: no learning signal in chunk 1: the loss was 0 at every step\n" in markdown
    from rfcli.cli.export import best_run

    assert best_run(results, "eval_loss").run.id == 2
    assert capsys.readouterr().out.splitlines() == [
        "best run by eval_loss (lowest first: a loss): 2 (eval_loss 2.1)",
        "warning: run 2: no learning signal in chunk 1: the loss was 0 at every step",
    ]


def test_figure_has_one_line_per_run_in_each_panel_with_labelled_axes(tmp_path: Path) -> None:
    figure = loss_figure(load_results(write_sweep(tmp_path)))
    train, evaluation = figure.axes
    assert (train.get_xlabel(), train.get_ylabel()) == ("step", "training loss")
    assert (evaluation.get_xlabel(), evaluation.get_ylabel()) == ("step", "eval loss")
    assert [line.get_label() for line in train.get_lines()] == [
        "run 1 r=8 lr=0.001",
        "run 2 r=8 lr=0.003 (stopped by policy)",
        "run 3 r=32 lr=0.001",
        "run 4 r=32 lr=0.003 (failed)",
    ]
    run1 = train.get_lines()[0]
    assert np.asarray(run1.get_xdata()).tolist() == list(range(1, 17))
    assert len(evaluation.get_lines()) == 3  # run 4 never had a finite eval loss
    assert len(train.collections) == 2  # an x at the last point of runs 2 and 4, which ended early
    legend = figure.legends[0]
    assert len(legend.get_texts()) == 4
    assert all(np.isfinite(np.asarray(line.get_ydata())).all() for line in train.get_lines())


def test_each_generation_metric_gets_a_panel_of_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "generation"
    with ExperimentStore(ExperimentLayout(folder).state_db) as store:
        for run_id in (1, 2):
            config = {
                "training": {"learning_rate": 1e-3 * run_id},
                "eval": {"metrics": ["recipes.qa_metrics:token_f1"]},
            }
            store.add_run(run_id, config, f"fp{run_id}", name=str(run_id), cause="plan")
            metrics = [(step, "loss", 3.0 - step * 0.1) for step in (1, 2, 3, 4)]
            metrics += [(step, "eval_token_f1", 0.1 * step * run_id) for step in (2, 4)]
            metrics += [(4, "eval_runtime", 1.0)]  # TRL's own eval figures are no panel
            checkpoint = str(ExperimentLayout(folder).checkpoints(run_id) / "checkpoint-4")
            store.record_chunk(run_id, chunks_done=2, global_step=4, checkpoint=checkpoint, metrics=metrics)
    figure = loss_figure(load_results(folder))
    assert [ax.get_title() for ax in figure.axes] == ["training loss", "eval loss", "eval_token_f1"]
    f1 = figure.axes[2]
    assert (f1.get_xlabel(), f1.get_ylabel()) == ("step", "eval_token_f1")
    assert [np.asarray(line.get_xdata()).tolist() for line in f1.get_lines()] == [[2, 4], [2, 4]]
    assert np.asarray(f1.get_lines()[1].get_ydata()).tolist() == pytest.approx([0.4, 0.8])
