"""Generation metrics at chunk boundaries: complete a fixed sample of eval prompts, then score them.

Each function of `eval.metrics` is called with keywords `prompts` (as the data has them),
`completions` (the generated text), `references` (each row's reference answer, or None when the
data has none) and every data column, and returns a float or a dict of floats, logged as
`eval_<function>` (and `eval_<function>/<key>` for each key of a dict). Generating restores the
random generators and the model's train mode, so a run scored at every boundary trains exactly as
one that never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

import torch

from rfcli.config.callables import resolve_callable
from rfcli.config.schema import metric_key
from rfcli.data.sources import check_prompt_columns
from rfcli.trainers.rng import capture_rng, restore_rng

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

    from rfcli.config.schema import ExperimentConfig, GenerateConfig

REFERENCE_COLUMNS = ("completion", "chosen")
"""The reference answer of a prompt row: SFT's completion, DPO's chosen answer."""
SECONDS_KEY = "rf/generation_seconds"


class MetricError(RuntimeError):
    """A generation metric raised or returned something else than numbers: its run fails with this."""


@dataclass(frozen=True)
class GenerationSample:
    """The eval rows that are completed at every boundary: the first `num_samples`, always the same."""

    prompts: list[Any]
    references: list[str | None] | None
    columns: dict[str, list[Any]]


def generation_sample(evaluation: Dataset, num_samples: int) -> GenerationSample:
    check_prompt_columns(evaluation)
    columns = evaluation.select(range(min(num_samples, len(evaluation)))).to_dict()
    if "prompt" in columns:
        reference = next((column for column in REFERENCE_COLUMNS if column in columns), None)
        if reference is None:
            return GenerationSample(columns["prompt"], None, columns)
        return GenerationSample(
            columns["prompt"], [message_text(value) for value in columns[reference]], columns
        )
    prompts: list[Any] = []
    answers: list[str | None] = []
    for conversation in columns["messages"]:
        answered = bool(conversation) and conversation[-1]["role"] == "assistant"
        prompts.append(conversation[:-1] if answered else conversation)
        answers.append(conversation[-1]["content"] if answered else None)
    return GenerationSample(prompts, answers, columns)


def message_text(value: Any) -> str:
    """A completion as text: the last message's content when it is a conversation."""
    return str(value[-1]["content"]) if isinstance(value, list) else str(value)


class GenerationMetrics:
    """One run's generation metrics: the sample encoded once, completed and scored at each boundary."""

    def __init__(
        self,
        specs: list[str],
        generate: GenerateConfig,
        tokenizer: PreTrainedTokenizerBase,
        evaluation: Dataset,
    ) -> None:
        self.metrics = [
            (spec, resolve_callable(spec, key=f"eval.metrics[{index}]")) for index, spec in enumerate(specs)
        ]
        self.sample = generation_sample(evaluation, generate.num_samples)
        self.tokenizer = tokenizer
        self.batches = encode_prompts(tokenizer, self.sample.prompts, generate.batch_size)
        self.settings: dict[str, Any] = {
            "max_new_tokens": generate.max_new_tokens,
            "do_sample": generate.do_sample,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "use_cache": True,  # the Trainer turns `model.config.use_cache` off for training
        }
        if generate.do_sample:
            self.settings["temperature"] = generate.temperature

    def score(self, model: PreTrainedModel) -> dict[str, float]:
        """Every metric of the completions the model generates now, and the seconds it took."""
        started = time.perf_counter()
        completions = self.complete(model)
        scores: dict[str, float] = {}
        for spec, function in self.metrics:
            scores.update(call_metric(spec, function, self.sample, completions))
        scores[SECONDS_KEY] = time.perf_counter() - started
        return scores

    def complete(self, model: PreTrainedModel) -> list[str]:
        rng = capture_rng()
        training = model.training
        model.eval()
        completions: list[str] = []
        try:
            with torch.no_grad():
                for batch in self.batches:  # ids and mask only: generate refuses token_type_ids
                    prompt_ids = batch["input_ids"].to(model.device)
                    mask = batch["attention_mask"].to(model.device)
                    output = model.generate(  # type: ignore[operator]
                        input_ids=prompt_ids, attention_mask=mask, **self.settings
                    )
                    new_tokens = output[:, prompt_ids.shape[1] :]
                    completions.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        finally:
            model.train(training)
            restore_rng(rng)
        return completions


def generation_metrics(
    config: ExperimentConfig, tokenizer: PreTrainedTokenizerBase, evaluation: Dataset | None
) -> GenerationMetrics | None:
    """The run's generation metrics, or None when its config names none."""
    if not config.eval.metrics or evaluation is None:
        return None
    return GenerationMetrics(config.eval.metrics, config.eval.generate, tokenizer, evaluation)


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[Any], batch_size: int
) -> list[BatchEncoding]:
    """Left-padded batches (generation continues each row from its own last token). A conversation
    goes through the chat template, which adds any special tokens itself."""
    encoded = [
        tokenizer(
            tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )
        if isinstance(prompt, list)
        else tokenizer(prompt)
        for prompt in prompts
    ]
    return [
        tokenizer.pad(encoded[start : start + batch_size], padding_side="left", return_tensors="pt")
        for start in range(0, len(encoded), batch_size)
    ]


def call_metric(
    spec: str, function: Callable[..., Any], sample: GenerationSample, completions: list[str]
) -> dict[str, float]:
    keywords = {
        **sample.columns,
        "prompts": sample.prompts,
        "completions": completions,
        "references": sample.references,
    }
    try:
        result = function(**keywords)
    except Exception as error:
        # The user's traceback, so the run's error points at the line of the metric that raised.
        raise MetricError(f"eval metric '{spec}' raised {type(error).__name__}: {error}").with_traceback(
            error.__traceback__
        ) from error
    return metric_values(spec, result)


def metric_values(spec: str, result: Any) -> dict[str, float]:
    """A float as `eval_<function>`, a dict of floats as `eval_<function>/<key>` each."""
    key = metric_key(spec)
    if is_number(result):
        return {key: float(result)}
    if isinstance(result, dict) and result and all(is_number(value) for value in result.values()):
        return {f"{key}/{name}": float(value) for name, value in result.items()}
    raise MetricError(
        f"eval metric '{spec}' returned {type(result).__name__} {str(result)[:80]}; "
        "expected a float or a non-empty dict of floats"
    )


def is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
