"""After a sweep, end to end: `rf report`, `rf compare`, `rf ls`, `rf export` (loaded back with PEFT
and transformers, and made to generate), `rf ctl retry`, and progress reports from inside a chunk.

One two-run sweep is trained once for the whole module: run 1 learns, run 2's learning rate of 1e8
fails it within a few steps. The retry test comes last, since it trains run 2 again.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModelForCausalLM
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfcli.engine.messages import ChunkDone, ChunkProgress, ChunkTrained, TrainChunk, WorkerReply
from rfcli.engine.worker import Worker
from rfcli.models.loading import resolve_model_path
from rfcli.results.experiment import load_results
from rfcli.results.figure import loss_figure
from rfcli.store.database import ExperimentStore
from rfcli.store.layout import STATE_DB
from rfcli.tracking.mlflow_tracker import MlflowTracker, mlflow_key, tracking_uri_for
from tests.e2e.conftest import run_rf, sweep_config, write_yaml

pytestmark = pytest.mark.e2e

RunRf = Callable[..., subprocess.CompletedProcess[str]]
Sweep = tuple[Path, Path]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """(config file, experiments folder) of the trained two-run sweep 'results'."""
    folder = tmp_path_factory.mktemp("results")
    config = sweep_config(folder / "experiments", "results")
    config["lora"]["r"] = 4
    config["training"].update({"learning_rate": {"grid": [1.0e-3, 1.0e8]}, "warmup_steps": 0})
    path = write_yaml(folder / "results.yaml", config)
    run_rf("run", path, expect=1)  # 1: a run failed
    return path, folder / "experiments"


def generate(model: torch.nn.Module, folder: Path) -> str:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer("What is your name?", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)  # type: ignore[operator]
    assert output.shape[1] == inputs["input_ids"].shape[1] + 5
    return str(tokenizer.decode(output[0]))


def test_report_draws_every_run_and_marks_the_failed_one(sweep: Sweep, rf: RunRf, tmp_path: Path) -> None:
    _, experiments = sweep
    result = rf("report", "results", "--dir", experiments, "--out", tmp_path / "report", expect=0)
    assert "best run by eval loss: 1 (lr=0.001)" in result.stdout
    assert (tmp_path / "report" / "losses.png").stat().st_size > 10_000
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| 2 | 1e+08 | failed |" in summary and "runs/1/checkpoints/checkpoint-16" in summary
    train = loss_figure(load_results(experiments / "results")).axes[0]
    assert [line.get_label() for line in train.get_lines()] == ["run 1 lr=0.001", "run 2 lr=1e+08 (failed)"]


def test_compare_and_ls_show_the_sweep(sweep: Sweep, rf: RunRf) -> None:
    _, experiments = sweep
    compared = rf("compare", "1", "2", "-e", "results", "--dir", experiments, expect=0).stdout
    row = next(line for line in compared.splitlines() if "training.learning_rate" in line)
    assert [cell.strip() for cell in row.split("│")[2:4]] == ["0.001", "1e+08"]
    listed = rf("ls", "--dir", experiments, expect=0).stdout
    row = next(line for line in listed.splitlines() if " results " in line)
    assert "1 completed · 1 failed" in row


def test_export_best_is_a_plain_peft_adapter_and_merge_a_full_model(
    sweep: Sweep, rf: RunRf, tmp_path: Path
) -> None:
    _, experiments = sweep
    best, merged = tmp_path / "best", tmp_path / "merged"
    result = rf("export", "--best", "-e", "results", "--dir", experiments, "--out", best, expect=0)
    assert "best run by eval_loss (lowest first: a loss): 1" in result.stdout
    assert "AutoPeftModelForCausalLM" in result.stdout
    adapter_config = json.loads((best / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(Path(resolve_model_path("rf-tiny")).resolve())
    assert (best / "tokenizer.json").is_file()
    adapter = AutoPeftModelForCausalLM.from_pretrained(best)
    assert list(adapter.peft_config) == ["default"]
    trained = load_file(
        experiments / "results/runs/1/checkpoints/checkpoint-16/run_1/adapter_model.safetensors"
    )
    exported = load_file(best / "adapter_model.safetensors")
    assert exported.keys() == trained.keys()
    assert all(torch.equal(exported[key], trained[key]) for key in trained)
    assert any(key.endswith("lora_B.weight") and exported[key].abs().sum() > 0 for key in exported)

    rf("export", "1", "--merge", "-e", "results", "--dir", experiments, "--out", merged, expect=0)
    assert not (merged / "adapter_config.json").exists()
    full = AutoModelForCausalLM.from_pretrained(merged)
    tokens = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(full(tokens).logits, adapter(tokens).logits, rtol=1e-4, atol=1e-4)
    assert generate(full, merged) == generate(adapter, best)


def test_export_of_a_full_fine_tune_is_its_model(rf: RunRf, tmp_path: Path) -> None:
    """A full fine-tune's checkpoint is a whole model: written here from rf-tiny, no training needed."""
    folder = tmp_path / "experiments" / "full"
    checkpoint = folder / "runs" / "1" / "checkpoints" / "checkpoint-4"
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("rf-tiny"))
    with torch.no_grad():
        base.lm_head.weight.mul_(2.0)  # "trained"
    base.save_pretrained(checkpoint)
    with ExperimentStore(folder / STATE_DB) as store:
        config = {"name": "full", "model": {"name": "rf-tiny"}, "data": {"train": {"source": "rows.jsonl"}}}
        store.add_run(1, config, "fp", name="1", cause="plan")
        store.record_chunk(
            1, chunks_done=1, global_step=4, checkpoint=str(checkpoint), metrics=[(4, "loss", 1.0)]
        )
    rf("export", "1", "--merge", "--dir", tmp_path / "experiments", "--out", tmp_path / "out", expect=0)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.equal(exported.lm_head.weight, base.lm_head.weight)
    generate(exported, tmp_path / "out")


def test_the_worker_reports_progress_before_its_first_chunk_ends(sweep: Sweep, tmp_path: Path) -> None:
    config, _ = sweep
    with ExperimentStore(sweep[1] / "results" / STATE_DB) as store:
        run_config = store.run(1).config
    sent: list[WorkerReply] = []
    worker = Worker(0, tmp_path / "experiment", sent.append)
    trained = worker.train_chunk(TrainChunk(1, run_config, None, 0))
    worker.close()  # once the chunk's checkpoint is written
    assert isinstance(trained, ChunkTrained)
    done = [message for message in sent if isinstance(message, ChunkDone)]
    assert len(done) == 1 and done[0].global_step == 4
    reports = [message for message in sent if isinstance(message, ChunkProgress)]
    first = reports[0]
    assert (first.run_id, first.step, first.chunk_end_step, first.chunk_index) == (1, 0, 4, 1)
    assert (first.total_chunks, first.max_steps) == (4, 16)  # known before the chunk ends


def test_retry_trains_a_failed_run_again_with_a_changed_setting(sweep: Sweep, rf: RunRf) -> None:
    config, experiments = sweep
    bad = rf("ctl", "retry", "2", "training.lerning_rate=1e-3", "--dir", experiments, "-e", "results")
    assert bad.returncode == 2 and "retry: training.lerning_rate" in bad.stderr
    change = ["training.learning_rate=1e-3", "training.max_steps=4"]  # 4 steps: a short retry
    retried = rf("ctl", "retry", "2", *change, "--dir", experiments, "-e", "results", "--wait", "0")
    assert "retry run 2: applied" in retried.stdout  # no rf run holds the experiment: applied at once
    rf("run", config, expect=0)
    with ExperimentStore(experiments / "results" / STATE_DB) as store:
        run = store.run(2)
        events = [(event.kind, event.cause) for event in store.events(limit=100, run_id=2)]
        stored = store.metrics(2)
    # MLflow shows what the store holds at every step; the failed attempt's NaN steps stay only in
    # the MLflow run kept as the earlier attempt.
    tracker = MlflowTracker(tracking_uri_for(experiments / "results"), "results")
    ((shown, _),) = tracker.runs_tagged("rf.run_id", "2")
    assert shown == run.mlflow_run_id
    assert sorted(tracker.logged_rows(shown)) == sorted(
        (step, mlflow_key(key), value) for step, key, value in stored
    )
    ((earlier, _),) = tracker.runs_tagged("rf.attempt_of", "2")
    assert any(math.isnan(value) for _, key, value in tracker.logged_rows(earlier, ["loss"]))
    assert run.state == "completed" and run.error is None and run.global_step == run.max_steps == 4
    assert run.config["training"]["learning_rate"] == 1e-3
    assert (
        events.index(("completed", "scheduler"))
        < events.index(("ready", "rf ctl"))
        < events.index(("failed", "error"))
    )
