"""What `rf run` loads and checks before it makes the experiment's folder, so a file with a mistake
never leaves a folder behind that blocks its corrected version under the same name.

For each distinct data config: loaded, formatted, its columns checked. For each model: found
offline (a built-in, a folder, the hub cache), its tokenizer loaded, its module names read (no
weights) to check LoRA's target_modules. For each run: its chunks against its optimizer steps, and
its reward functions' answer to a sample. Every problem found is reported at once.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from rfcli.config.errors import ConfigError, did_you_mean, raise_all

if TYPE_CHECKING:
    from datasets import Dataset

    from rfcli.config.plan import PlannedRun, RunPlan
    from rfcli.config.schema import ExperimentConfig, ModelConfig

T = TypeVar("T")
Modules = dict[str, bool]
"""A model's module names, and whether LoRA can adapt each."""


def check_inputs(run_plan: RunPlan) -> None:
    """Load and check what every run of the plan needs; raise every problem found, located in the file."""
    from rfcli.data.sources import data_key, load_run_data
    from rfcli.trainers.host import model_key

    quiet_loading()
    errors: list[ConfigError] = []
    train_sets: dict[str, Dataset | None] = {}
    modules: dict[str, Modules | None] = {}
    for run in run_plan.runs:
        config = run.config
        key = data_key(config)
        if key not in train_sets:
            loaded = _collect(errors, load_run_data, config)
            train_sets[key] = loaded[0] if loaded is not None else None
        model = model_key(config.model)
        if model not in modules:
            modules[model] = _collect(errors, model_modules, config.model)
        errors.extend(run_errors(run, train_sets[key], modules[model]))
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


def run_errors(run: PlannedRun, train: Dataset | None, modules: Modules | None) -> Iterator[ConfigError]:
    config = run.config
    if modules is not None and config.lora is not None and config.lora.get("target_modules") is not None:
        yield from target_errors(config, modules)
    if train is not None:
        yield from chunk_errors(run, len(train))
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


def chunk_errors(run: PlannedRun, num_rows: int) -> Iterator[ConfigError]:
    """A run cannot have more chunks than optimizer steps: each chunk ends on a step of its own."""
    from rfcli.config.kinds import trainer_kind
    from rfcli.config.training import training_arguments
    from rfcli.trainers.chunking import optimizer_steps, steps_per_epoch

    config = run.config
    with tempfile.TemporaryDirectory() as scratch:
        args = training_arguments(config, scratch)
    if args.max_steps <= 0 and not trainer_kind(config.trainer).steps_from_rows:
        return
    batches = math.ceil(num_rows / args.per_device_train_batch_size)
    epoch_steps = steps_per_epoch(batches, args.gradient_accumulation_steps)
    steps = optimizer_steps(epoch_steps, args.num_train_epochs, args.max_steps)
    if config.num_chunks > steps:
        yield ConfigError(
            f"expected at most {steps} (run {run.id} has {steps} optimizer steps, and each chunk ends on "
            f"a step of its own), got {config.num_chunks}",
            key="num_chunks",
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
