"""The experiment file's schema, as typed dataclasses that OmegaConf checks values against."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from rfcli.config.kinds import TRAINERS

MODEL_BASED_METHODS = ("tpe", "gp", "cmaes", "qmc")
"""Search methods that propose configurations while the sweep runs (Optuna's samplers)."""
SEARCH_METHODS = ("grid", "random", *MODEL_BASED_METHODS)
MAX_SEED = 2**32 - 1
"""The largest seed numpy's generators take (`seed`, `shuffle_seed`)."""


@dataclass
class ModelConfig:
    name: str = "rf-tiny"
    """A hub name, a local folder, or 'rf-tiny' (a tiny model built locally, for offline use)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to `AutoModelForCausalLM.from_pretrained` (dtype, attn_implementation, ...)."""
    tokenizer: str | None = None
    """Tokenizer name or path when it differs from the model's."""
    reference: str | None = None
    """DPO only: the reference model (a hub name, a folder or a built-in name), loaded with `kwargs`.
    By default the reference is the base model as it was loaded (with LoRA: adapters disabled)."""


def model_key(model: ModelConfig) -> str:
    """Runs whose models have the same key share one loaded base model on a worker."""
    return json.dumps(
        {"name": model.name, "kwargs": model.kwargs, "tokenizer": model.tokenizer}, sort_keys=True
    )


FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
"""Local data file suffix -> the `datasets` builder that reads it (a .txt file: one 'text' row per line)."""


@dataclass
class DataSource:
    source: str = "???"
    """A hub data set name, a local .jsonl/.json/.csv/.parquet/.txt file, or `module:function`."""
    split: str = "train"
    select: int | None = None
    """Keep only the first N rows (after shuffling, when a shuffle seed is given)."""
    shuffle_seed: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to `datasets.load_dataset` (a config name, data_files, ...) or to the function."""


@dataclass
class DataConfig:
    train: DataSource = field(default_factory=DataSource)
    eval: DataSource | None = None
    eval_fraction: float | None = None
    """Hold out this fraction of the training rows for evaluation when no eval source is given."""
    formatting: str | None = None
    """`module:function` turning one row into the trainer's columns (e.g. prompt/completion)."""
    eval_rows: int | None = None
    """Evaluate at chunk boundaries on this many rows of the eval set, drawn once with a fixed seed so
    every run is scored on the same rows; None: on every row. Makes boundaries cheaper on a large set."""


@dataclass
class RewardConfig:
    function: str = "???"
    """`module:function` called by GRPO with TRL's keywords; returns one float per completion."""
    weight: float = 1.0


@dataclass
class GenerateConfig:
    """How completions are generated for `eval.metrics` at each chunk boundary."""

    max_new_tokens: int = 32
    num_samples: int = 32
    """Generate for the first N eval rows: the same prompts for every run and every chunk."""
    batch_size: int = 8
    do_sample: bool = False
    """Greedy by default; sampling draws from generators that are restored afterwards."""
    temperature: float = 1.0


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=list)
    """`module:function` each, called at every chunk boundary with keywords prompts, completions
    (the generated text), references and every data column; returns a float or a dict of floats."""
    generate: GenerateConfig = field(default_factory=GenerateConfig)


def metric_key(spec: str) -> str:
    """What a metric function's result is logged as: `eval_<function>` (a dict adds `/<key>`)."""
    return f"eval_{spec.rpartition(':')[2]}"


def generation_metric_keys(configs: Iterable[dict[str, Any]], logged: Collection[str]) -> list[str]:
    """The keys among `logged` that the configs' `eval.metrics` wrote, in config order: what the
    live table shows as columns and `rf report` draws as panels."""
    keys: list[str] = []
    for config in configs:
        for spec in (config.get("eval") or {}).get("metrics") or []:
            prefix = metric_key(spec)
            found = sorted(key for key in logged if key == prefix or key.startswith(f"{prefix}/"))
            keys.extend(key for key in found if key not in keys)
    return keys


@dataclass
class SearchConfig:
    method: str = "grid"
    """grid | random (the plan, drawn up front) | tpe | gp | cmaes | qmc (proposed while the sweep runs)."""
    num_samples: int | None = None
    """random: how many distinct configurations to draw; tpe, gp, cmaes, qmc: how many to try in all."""
    concurrent: int | None = None
    """tpe, gp, cmaes, qmc: runs training or waiting at once (default 8); a freed slot gets the next
    proposal."""
    seed: int | None = None
    """Seeds the draws and proposals; default: the experiment's `seed`."""
    metric: str | None = None
    """tpe, gp, cmaes, qmc: what to optimize; default: the policy's metric, or eval_loss."""
    mode: str | None = None
    """min or max; default: the policy's mode, or min."""
    prior: list[str] = field(default_factory=list)
    """tpe, gp, cmaes, qmc: experiments (same trainer and space) whose runs the sampler starts from."""
    budget: int | None = None
    """tpe, gp, cmaes, qmc: chunk-units (chunks the runs train) to spend: nothing more is proposed once
    the chunks trained, plus one for each run in the schedule, reach it."""


POLICIES = ("none", "sha", "asha", "pbt")
POLICY_MODES = ("min", "max")


@dataclass
class PolicyConfig:
    """Which runs go on, decided at chunk boundaries from a metric every run records there."""

    name: str = "none"
    """none | sha (successive halving, synchronous) | asha (asynchronous) | pbt."""
    metric: str = "eval_loss"
    """Any metric the runs record at chunk boundaries: eval_loss, a GRPO reward mean, ..."""
    mode: str = "min"
    """min or max: whether a lower or a higher metric is better."""
    eta: int = 2
    """sha/asha: at each rung the best 1/eta go on."""
    rungs: list[int] | None = None
    """sha/asha: chunk counts at which runs are compared; default the powers of eta below the last chunk."""
    interval: int = 2
    """pbt: chunks between exploits."""
    quantile: float = 0.25
    """pbt: the bottom quantile is replaced by clones of the top quantile."""
    perturb: list[str] = field(default_factory=lambda: ["training.learning_rate"])
    """pbt: the numeric settings a clone changes (dotted keys the config sets)."""
    factors: list[float] = field(default_factory=lambda: [0.8, 1.2])
    """pbt: each perturbed setting is multiplied by one of these..."""
    resample_probability: float = 0.25
    """pbt: ...or, with this probability, drawn afresh from the values the plan gave it."""
    dry_run: bool = False
    """Record every decision (events, `rf status`, MLflow) without acting on it."""

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(f"policy.name: expected one of {', '.join(POLICIES)}, got '{self.name}'")
        if self.mode not in POLICY_MODES:
            raise ValueError(f"policy.mode: expected min or max, got '{self.mode}'")
        if self.eta < 2:
            raise ValueError(f"policy.eta: expected an integer >= 2, got {self.eta}")
        if self.rungs is not None and (not self.rungs or min(self.rungs) < 1):
            raise ValueError(f"policy.rungs: expected chunk counts >= 1, got {self.rungs}")
        if self.interval < 1:
            raise ValueError(f"policy.interval: expected an integer >= 1, got {self.interval}")
        if not 0 < self.quantile <= 0.5:
            raise ValueError(
                f"policy.quantile: expected a number above 0 and at most 0.5, got {self.quantile}"
            )
        if not self.factors or min(self.factors) <= 0:
            raise ValueError(f"policy.factors: expected positive numbers, got {self.factors}")
        if not 0 <= self.resample_probability <= 1:
            raise ValueError(
                f"policy.resample_probability: expected a number from 0 to 1, got {self.resample_probability}"
            )


@dataclass
class ExperimentConfig:
    name: str = "???"
    trainer: str = "sft"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: dict[str, Any] | None = None
    """PEFT `LoraConfig` fields; absent means full fine-tuning."""
    training: dict[str, Any] = field(default_factory=dict)
    """Fields of TRL's `SFTConfig` / `DPOConfig` / `GRPOConfig`, checked against that class."""
    rewards: list[RewardConfig] = field(default_factory=list)
    eval: EvalConfig = field(default_factory=EvalConfig)
    num_chunks: int = 4
    seed: int = 42
    search: SearchConfig = field(default_factory=SearchConfig)
    experiments_dir: str = "rf-experiments"
    """Where the experiment's folder lives (state store, MLflow store, checkpoints, logs)."""
    tracking_uri: str | None = None
    """An MLflow tracking URI; by default a SQLite store inside the experiment folder."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Stop weak runs early (sha, asha) or breed strong ones (pbt); none by default."""

    def __post_init__(self) -> None:
        """Every problem at once, one 'key: message' line each (the plan turns them into errors)."""
        problems = []
        if self.trainer not in TRAINERS:
            problems.append(f"trainer: expected one of {', '.join(TRAINERS)}, got '{self.trainer}'")
        if self.search.method not in SEARCH_METHODS:
            problems.append(
                f"search.method: expected one of {', '.join(SEARCH_METHODS)}, got '{self.search.method}'"
            )
        if self.num_chunks < 1:
            problems.append(f"num_chunks: expected an integer >= 1, got {self.num_chunks}")
        if not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed: expected an integer from 0 to {MAX_SEED} (2**32 - 1), got {self.seed}")
        problems.extend(self.source_problems())
        if self.data.eval_fraction is not None and not 0 < self.data.eval_fraction < 1:
            problems.append(
                f"data.eval_fraction: expected a number between 0 and 1, got {self.data.eval_fraction}"
            )
        if self.data.eval_rows is not None and self.data.eval_rows < 1:
            problems.append(f"data.eval_rows: expected an integer >= 1, got {self.data.eval_rows}")
        elif self.data.eval_rows is not None and self.data.eval is None and self.data.eval_fraction is None:
            problems.append(
                "data.eval_rows: there is no eval set to sample; set data.eval or data.eval_fraction"
            )
        problems.extend(self.eval_problems())
        if problems:
            raise ValueError("\n".join(problems))
        self.experiments_dir = os.path.expanduser(self.experiments_dir)

    def source_problems(self) -> list[str]:
        problems = []
        for split, source in (("train", self.data.train), ("eval", self.data.eval)):
            if source is not None and source.select is not None and source.select < 1:
                problems.append(f"data.{split}.select: expected an integer >= 1 or null, got {source.select}")
            if (
                source is not None
                and source.shuffle_seed is not None
                and not 0 <= source.shuffle_seed <= MAX_SEED
            ):
                problems.append(
                    f"data.{split}.shuffle_seed: expected an integer from 0 to {MAX_SEED} (2**32 - 1) "
                    f"or null, got {source.shuffle_seed}"
                )
        return problems

    def eval_problems(self) -> list[str]:
        problems = []
        if self.eval.metrics and self.data.eval is None and self.data.eval_fraction is None:
            problems.append(
                "eval.metrics: generation metrics need eval data: set data.eval or data.eval_fraction"
            )
        generate = self.eval.generate
        for name in ("max_new_tokens", "num_samples", "batch_size"):
            if getattr(generate, name) < 1:
                problems.append(
                    f"eval.generate.{name}: expected an integer >= 1, got {getattr(generate, name)}"
                )
        if generate.temperature <= 0:
            problems.append(f"eval.generate.temperature: expected a number > 0, got {generate.temperature}")
        return problems
