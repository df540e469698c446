"""rf overrides private methods of transformers' Trainer; each test here fails the day the library
stops calling one of them the way rf relies on (renamed, called from elsewhere, with other arguments).

- `_save_checkpoint` writes the RNG state before the worker is handed back, and `_save_rng_state`
  saves nothing later: the state in a checkpoint is the run's own, not the next run's.
- `_get_output_dir` sends the rest of the checkpoint to the staging folder, renamed once durable.
- `_save` writes the run's own adapter only.
- `_load_optimizer_and_scheduler` is where a resume loads the optimizer, so a retried run can skip it.

TRL's private `_prepare_dataset` (shared preparation) is guarded by tests/unit/test_shared_preparation.py
and `_precompute_ref_logps` (the shared reference log-probs) by tests/e2e/test_dpo_grpo.py.

A real rf-tiny LoRA run of 4 steps, built as a worker builds it, saving at step 2.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from rfcli.config.plan import to_typed_config
from rfcli.data.sources import load_run_data
from rfcli.store.checksums import CHECKSUMS, damage
from rfcli.trainers import checkpoints
from rfcli.trainers.build import build_trainer
from rfcli.trainers.checkpoints import STAGING_FOLDER
from rfcli.trainers.host import ModelHost
from rfcli.trainers.rng import capture_rng

CONFIG: dict[str, Any] = {
    "name": "hooks",
    "model": {"name": "rf-tiny"},
    "data": {"train": {"source": "recipes.qa_data:chatterbot_qa", "select": 32}},
    "lora": {"r": 4, "target_modules": "all-linear"},
    "training": {"max_steps": 4, "per_device_train_batch_size": 8, "max_length": 32},
    "seed": 0,
}


def trainer_for(folder: Path, host: ModelHost, run_id: int = 1, **training: Any) -> Any:
    raw = {**CONFIG, "training": {**CONFIG["training"], **training}}
    config = to_typed_config(raw)
    model, activate = host.model_for_run(run_id, config)
    activate()
    train, _ = load_run_data(config)
    trainer = build_trainer(
        config, model, host.tokenizer(config.model), train, None, str(folder), reference_folder=folder
    )
    trainer.args.save_strategy = "steps"  # rf saves at chunk boundaries; here, at step 2
    trainer.args.save_steps = 2
    return trainer


@pytest.fixture(scope="module")
def host() -> ModelHost:
    return ModelHost()


@dataclass
class Saved:
    folder: Path
    """The run's checkpoints folder: checkpoint-2 and checkpoint-4."""
    at_handoff: list[dict[str, Any]]
    """The generators' state at each handoff, before the next run draws from them."""
    staged: list[set[str]]
    """What each checkpoint's staging folder held when it was made durable."""


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, host: ModelHost) -> Saved:
    """Run 1 trained 4 steps, saving at steps 2 and 4, with the next run drawing at each handoff."""
    result = Saved(tmp_path_factory.mktemp("hooks"), [], [])
    trainer = trainer_for(result.folder, host)

    def handoff(write: Callable[[], None]) -> None:
        result.at_handoff.append(capture_rng())
        torch.rand(1000), random.random()  # the next run draws from the same generators at once
        write()

    trainer.handoff = handoff
    original = checkpoints.make_durable

    def spy(folder: Path) -> None:
        result.staged.append({path.name for path in folder.iterdir()})
        original(folder)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoints, "make_durable", spy)
        trainer.train()
    host.release(1)
    return result


def test_a_checkpoint_holds_the_rng_state_of_before_the_handoff_its_own_adapter_and_checksums(
    saved: Saved,
) -> None:
    assert len(saved.at_handoff) == 2, "the Trainer saved through `_save_checkpoint` at steps 2 and 4"
    checkpoint = saved.folder / "checkpoint-2"
    rng = torch.load(checkpoint / "rng_state.pth", weights_only=False)
    assert torch.equal(rng["cpu"], saved.at_handoff[0]["cpu"]), "the RNG state was written after the handoff"
    assert rng["python"] == saved.at_handoff[0]["python"]
    # Everything was written into the staging folder (`_get_output_dir`), then renamed into place.
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth", "run_1"} <= saved.staged[0]
    assert not list((saved.folder / STAGING_FOLDER).iterdir())
    # `_save`: the run's own adapter, in the folder the Trainer's resume reads, and no tokenizer.
    assert sorted(path.name for path in (checkpoint / "run_1").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert not (checkpoint / "tokenizer.json").exists()
    assert not (checkpoint / "adapter_model.safetensors").exists()
    assert (checkpoint / CHECKSUMS).is_file() and damage(checkpoint) is None


@pytest.mark.parametrize("fresh", [False, True], ids=["resumed optimizer", "fresh optimizer"])
def test_resuming_loads_the_optimizer_unless_told_to_start_it_afresh(
    saved: Saved, tmp_path: Path, host: ModelHost, fresh: bool
) -> None:
    resumed = trainer_for(tmp_path, host, learning_rate=1e-2)  # a retry with a change
    resumed.fresh_optimizer = fresh
    calls: list[str | None] = []
    load = type(resumed)._load_optimizer_and_scheduler  # rf's override

    def spy(self: Any, checkpoint: str | None) -> None:
        calls.append(checkpoint)
        load(self, checkpoint)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(resumed), "_load_optimizer_and_scheduler", spy)
        resumed.train(resume_from_checkpoint=str(saved.folder / "checkpoint-2"))
    host.release(1)
    assert calls == [str(saved.folder / "checkpoint-2")]
    steps = {int(state["step"]) for state in resumed.optimizer.state.values()}
    assert steps == ({2} if fresh else {4}), "Adam's step count: its moments were loaded, or not"
