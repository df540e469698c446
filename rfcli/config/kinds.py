"""What makes a trainer kind (sft, dpo, grpo), in one place that every layer reads.

A kind names TRL's config and trainer classes, the data columns its trainer reads, rf's defaults
that differ from TRL's for it, and its own checks. Classes are named as 'module:Class' strings and
imported on use, so reading a kind costs nothing: `rf --help` and the plan's first checks do not
import TRL.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rfcli.config.errors import ConfigError
from rfcli.config.fields import FieldRule, field_errors, integer, number

if TYPE_CHECKING:
    from rfcli.config.schema import ExperimentConfig


@dataclass(frozen=True)
class TrainerKind:
    name: str
    config_class: str
    """TRL's config class, 'module:Class'; `training:` holds its fields."""
    trainer_class: str
    columns: tuple[tuple[str, ...], ...]
    """The column sets its trainer reads; a data set needs every column of at least one set."""
    uses_reference: bool = False
    """Scores against a reference model (`model.reference`, or the base model as loaded)."""
    uses_rewards: bool = False
    """Trains on `rewards:` functions' scores of its own generations."""
    steps_from_rows: bool = True
    """An epoch's optimizer steps follow from the row count and batch size (GRPO's follow from
    its generations, known only when training)."""
    mixins: tuple[str, ...] = ()
    """rf's own additions to its trainer class, 'module:Class', each resting on how this kind's TRL
    trainer works (see each module)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """rf's defaults that differ from TRL's for this kind, each for a reason."""
    fields: Mapping[str, FieldRule] = field(default_factory=dict)
    """Types and ranges of its own `training:` fields."""
    check: Callable[[ExperimentConfig], Iterator[ConfigError]] | None = None
    """Checks that span several settings."""

    def errors(self, config: ExperimentConfig) -> Iterator[ConfigError]:
        yield from field_errors(config.training, self.fields, "training")
        if self.check is not None:
            yield from self.check(config)


def _grpo_checks(config: ExperimentConfig) -> Iterator[ConfigError]:
    if not config.rewards:
        yield ConfigError("GRPO needs at least one reward function (`module:function`)", key="rewards")
    if config.lora is not None and config.training.get("beta", 0.0):
        # TRL 1.16 copies an adapter named "default" into "ref"; rf's runs are run_<id> on one model.
        yield ConfigError(
            "GRPO with LoRA and a KL term (beta > 0) is not supported yet: leave beta at 0 "
            "or fine-tune fully (no lora)",
            key="training.beta",
        )
    if config.training.get("use_vllm"):
        yield ConfigError(
            "vLLM generation is not supported yet: every run's trainer would start its own vLLM engine in "
            "the same worker. Remove it (GRPO then generates with transformers)",
            key="training.use_vllm",
        )


KINDS: dict[str, TrainerKind] = {
    "sft": TrainerKind(
        "sft",
        "trl:SFTConfig",
        "trl:SFTTrainer",
        (("text",), ("messages",), ("prompt", "completion")),
        mixins=(
            "rfcli.trainers.grouped_eval:GroupedEval",
            "rfcli.trainers.shared_preparation:SharedPreparation",
        ),
        fields={"max_length": integer(1, optional=True)},
    ),
    "dpo": TrainerKind(
        "dpo",
        "trl:DPOConfig",
        "trl:DPOTrainer",
        (("prompt", "chosen", "rejected"),),
        uses_reference=True,
        # Reference log-probs are computed once per experiment and shared by the runs that match.
        defaults={"precompute_ref_log_probs": True},
        fields={"beta": number(0), "max_length": integer(1, optional=True)},
    ),
    "grpo": TrainerKind(
        "grpo",
        "trl:GRPOConfig",
        "trl:GRPOTrainer",
        (("prompt",),),
        uses_rewards=True,
        steps_from_rows=False,
        fields={"num_generations": integer(2), "max_completion_length": integer(1), "beta": number(0)},
        check=_grpo_checks,
    ),
}
TRAINERS = tuple(KINDS)


def trainer_kind(name: str) -> TrainerKind:
    return KINDS[name]


def load_class(path: str) -> type:
    """Import 'module:Class'."""
    module, _, name = path.partition(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def kind_errors(config: ExperimentConfig) -> Iterator[ConfigError]:
    """Checks every kind shares that depend on which kind it is."""
    kind = trainer_kind(config.trainer)
    if config.model.reference is not None and not kind.uses_reference:
        users = " or ".join(name for name, other in KINDS.items() if other.uses_reference)
        yield ConfigError(f"only the {users} trainer uses one, not {config.trainer}", key="model.reference")
    if config.rewards and not kind.uses_rewards:
        users = " or ".join(name for name, other in KINDS.items() if other.uses_rewards)
        yield ConfigError(
            f"only the {users} trainer uses reward functions, not {config.trainer}", key="rewards"
        )
    yield from kind.errors(config)
