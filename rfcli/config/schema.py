"""The experiment file's schema, as typed dataclasses that OmegaConf checks values against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TRAINERS = ("sft", "dpo", "grpo")
SEARCH_METHODS = ("grid", "random")


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


@dataclass
class DataSource:
    source: str = "???"
    """A hub data set name, a local .jsonl/.json/.csv/.parquet file, or `module:function`."""
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
class SearchConfig:
    method: str = "grid"
    num_samples: int | None = None
    """Random search only: how many distinct configurations to draw."""


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
    num_chunks: int = 4
    seed: int = 42
    search: SearchConfig = field(default_factory=SearchConfig)
    experiments_dir: str = "rf-experiments"
    """Where the experiment's folder lives (state store, MLflow store, checkpoints, logs)."""
    tracking_uri: str | None = None
    """An MLflow tracking URI; by default a SQLite store inside the experiment folder."""

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"trainer: expected one of {', '.join(TRAINERS)}, got '{self.trainer}'")
        if self.search.method not in SEARCH_METHODS:
            raise ValueError(f"search.method: expected grid or random, got '{self.search.method}'")
        if self.num_chunks < 1:
            raise ValueError(f"num_chunks: expected an integer >= 1, got {self.num_chunks}")
        if self.data.eval_fraction is not None and not 0 < self.data.eval_fraction < 1:
            raise ValueError(
                f"data.eval_fraction: expected a number between 0 and 1, got {self.data.eval_fraction}"
            )
        if self.data.eval_rows is not None and self.data.eval_rows < 1:
            raise ValueError(f"data.eval_rows: expected an integer >= 1, got {self.data.eval_rows}")
        if self.data.eval_rows is not None and self.data.eval is None and self.data.eval_fraction is None:
            raise ValueError(
                "data.eval_rows: there is no eval set to sample; set data.eval or data.eval_fraction"
            )
        if self.model.reference is not None and self.trainer != "dpo":
            raise ValueError(f"model.reference: only the dpo trainer uses one, not {self.trainer}")
        if self.trainer == "grpo" and not self.rewards:
            raise ValueError("rewards: GRPO needs at least one reward function (`module:function`)")
