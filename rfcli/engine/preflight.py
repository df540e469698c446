"""What `rf run` loads and checks before it makes the experiment's folder, so a file with a mistake
never leaves a folder behind that blocks its corrected version under the same name.

For each distinct data config: loaded, formatted, its columns checked. For each model: found
offline (a built-in, a folder, the hub cache), its tokenizer loaded, its module names read (no
weights) to check LoRA's target_modules. For each run: its chunks against its optimizer steps, and
its reward functions' answer to a sample. For the policy: a rung or exploit point that some run
reaches. Every problem found is reported at once.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from rfcli.config.errors import ConfigError, did_you_mean, raise_all
from rfcli.trainers.chunking import chunk_boundaries

if TYPE_CHECKING:
    from datasets import Dataset

    from rfcli.config.plan import PlannedRun, RunPlan
    from rfcli.config.schema import ExperimentConfig, ModelConfig, PolicyConfig

T = TypeVar("T")
Modules = dict[str, bool]
"""A model's module names, and whether LoRA can adapt each."""


def check_inputs(run_plan: RunPlan) -> None:
    """Load and check what every run of the plan needs; raise every problem found, located in the file."""
    from rfcli.config.schema import model_key
    from rfcli.data.sources import data_key, load_run_data

    quiet_loading()
    errors: list[ConfigError] = []
    train_sets: dict[str, Dataset | None] = {}
    modules: dict[str, Modules | None] = {}
    chunks: dict[int, int] = {}
    for run in run_plan.runs:
        config = run.config
        key = data_key(config)
        if key not in train_sets:
            loaded = _collect(errors, load_run_data, config)
            train_sets[key] = loaded[0] if loaded is not None else None
        model = model_key(config.model)
        if model not in modules:
            modules[model] = _collect(errors, model_modules, config.model)
        errors.extend(run_errors(run, train_sets[key], modules[model], chunks))
    if len(chunks) == len(run_plan.runs):
        errors.extend(policy_errors(run_plan.runs[0].config.policy, chunks))
    raise_all(error.located(run_plan.source) for error in errors)


def quiet_loading() -> None:
    """Progress bars and log lines of `datasets` and `transformers` would print around the error lines
    (and later through the live table); rf reports what goes wrong itself."""
    import datasets
    from transformers.utils import logging as transformers_logging

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    transformers_logging.disable_progress_bar()


def _collect(errors: list[ConfigError], load: Callable[[Any], T], argument: Any) -> T | None:
    try:
        return load(argument)
    except ConfigError as error:
        errors.append(error)
        return None


def model_modules(model: ModelConfig) -> Modules | None:
    """Find the model (and its tokenizer and DPO reference) offline, load the tokenizer, and return
    the model's module names; None when it is a hub model that only a worker will download."""
    from transformers import AutoConfig

    from rfcli.models.loading import MODEL_FILES, from_pretrained, load_tokenizer, locate_model
    from rfcli.models.modules import module_names

    folder = locate_model(model.name, "model.name")
    modules = None
    if folder is not None:
        modules = module_names(
            from_pretrained(AutoConfig.from_pretrained, str(folder), "model.name", MODEL_FILES)
        )
    tokenizer = locate_model(model.tokenizer, "model.tokenizer") if model.tokenizer else folder
    if model.reference:
        locate_model(model.reference, "model.reference")
    if tokenizer is not None:
        load_tokenizer(dataclasses.replace(model, name=str(folder or model.name), tokenizer=str(tokenizer)))
    return modules


def run_errors(
    run: PlannedRun, train: Dataset | None, modules: Modules | None, chunks: dict[int, int]
) -> Iterator[ConfigError]:
    """The run's problems; `chunks` gets its number of chunks when its steps follow from its rows."""
    config = run.config
    if modules is not None and config.lora is not None and config.lora.get("target_modules") is not None:
        yield from target_errors(config, modules)
    if train is not None:
        steps = optimizer_steps(config, len(train))
        if steps is not None:
            epoch_steps, total_steps = steps
            yield from chunk_errors(run, total_steps)
            if epoch_steps is not None:
                chunks[run.id] = len(chunk_boundaries(epoch_steps, config.num_chunks, total_steps))
        for index, reward in enumerate(config.rewards):
            yield from reward_errors(reward.function, f"rewards[{index}].function", train)


def target_errors(config: ExperimentConfig, modules: Modules) -> Iterator[ConfigError]:
    from rfcli.models.modules import target_problems

    assert config.lora is not None
    targets = config.lora["target_modules"]
    adaptable = sorted({name.rsplit(".", 1)[-1] for name, ok in modules.items() if ok})
    for target, problem in target_problems(targets, modules):
        yield ConfigError(
            f"{problem}{did_you_mean(target, adaptable)}; model '{config.model.name}' has "
            f"{', '.join(adaptable)} (or give all-linear)",
            key="lora.target_modules",
        )


def optimizer_steps(config: ExperimentConfig, num_rows: int) -> tuple[int | None, int] | None:
    """(steps per epoch, steps in all) as the Trainer counts them from `num_rows` rows; the first is
    None, or both are, when they follow from the trainer's generations (GRPO) instead."""
    from rfcli.config.kinds import trainer_kind
    from rfcli.config.training import training_arguments
    from rfcli.trainers import chunking
    from rfcli.trainers.chunking import steps_per_epoch

    with tempfile.TemporaryDirectory() as scratch:
        args = training_arguments(config, scratch)
    epoch_steps = None
    if trainer_kind(config.trainer).steps_from_rows:
        batches = math.ceil(num_rows / args.per_device_train_batch_size)
        epoch_steps = steps_per_epoch(batches, args.gradient_accumulation_steps)
    if epoch_steps is None:
        return (None, args.max_steps) if args.max_steps > 0 else None
    return epoch_steps, chunking.optimizer_steps(epoch_steps, args.num_train_epochs, args.max_steps)


def chunk_errors(run: PlannedRun, steps: int) -> Iterator[ConfigError]:
    """A run cannot have more chunks than optimizer steps: each chunk ends on a step of its own."""
    config = run.config
    if config.num_chunks > steps:
        yield ConfigError(
            f"expected at most {steps} (run {run.id} has {steps} optimizer steps, and each chunk ends on "
            f"a step of its own), got {config.num_chunks}",
            key="num_chunks",
        )


def policy_errors(policy: PolicyConfig, chunks: dict[int, int]) -> Iterator[ConfigError]:
    """A policy acts at chunk counts before a run's last chunk: one whose rungs (or exploit points)
    no run reaches would never act, and `rf run` would train the whole grid without a word."""
    from rfcli.engine.judging import make_policy
    from rfcli.policy.halving import SuccessiveHalving
    from rfcli.policy.pbt import PopulationBasedTraining

    judge = make_policy(policy, [])
    lengths = sorted(set(chunks.values()))
    said = f"{lengths[-1]}" if len(lengths) == 1 else f"{lengths[0]} to {lengths[-1]}"
    if isinstance(judge, SuccessiveHalving):
        reached = {rung for length in lengths for rung in judge.rungs_for(length)}
        late = sorted(set(policy.rungs or ()) - reached)
        if late:
            yield ConfigError(
                f"no run reaches chunk {', '.join(map(str, late))} before its last (the runs have {said} "
                f"chunks), so none is judged there: give rungs below {lengths[-1]}",
                key="policy.rungs",
            )
        elif not reached:
            yield ConfigError(
                f"{policy.name} judges runs at the powers of {policy.eta} below their last chunk, and the "
                f"runs have {said} chunk(s), so it never judges: raise num_chunks (or give policy.rungs)",
                key="policy.name",
            )
    elif isinstance(judge, PopulationBasedTraining):
        if not any(judge.points_for(length) for length in lengths):
            yield ConfigError(
                f"PBT exploits every {policy.interval} chunks before a run's last, and the runs have {said} "
                f"chunks, so it never does: lower policy.interval below {lengths[-1]} or raise num_chunks",
                key="policy.interval",
            )


def reward_errors(spec: str, key: str, train: Dataset) -> Iterator[ConfigError]:
    """Ask the reward to score one sample completion per prompt of the first rows. A reward that
    raises on that made-up completion says nothing (it may need a real one); one that answers with
    something other than one number per completion is wrong whatever it is given."""
    from rfcli.config.callables import resolve_callable
    from rfcli.trainers.rewards import check_reward_values

    rows = train.select(range(min(2, len(train))))
    prompts = rows["prompt"]
    completions = [[{"role": "assistant", "content": ""}] if isinstance(p, list) else "" for p in prompts]
    columns = {name: rows[name] for name in rows.column_names if name != "prompt"}
    function = resolve_callable(spec, key)
    try:
        values = function(
            prompts=prompts, completions=completions, completion_ids=[[] for _ in prompts], **columns
        )
    except Exception:  # noqa: BLE001 - see the docstring
        return
    try:
        check_reward_values(values, len(prompts), spec, key)
    except ConfigError as error:
        yield error
