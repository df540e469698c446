"""Generation metrics: the eval sample, the metric calls and their errors, generating on rf-tiny
without disturbing training, and the `eval:` section's checks when a plan is compiled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfcli.config.errors import ConfigError
from rfcli.config.plan import build_run_config
from rfcli.config.schema import GenerateConfig
from rfcli.data.sources import check_prompt_columns
from rfcli.engine.worker import describe_error
from rfcli.models.tiny import builtin_model_path
from rfcli.trainers.generation_eval import (
    SECONDS_KEY,
    GenerationMetrics,
    GenerationSample,
    MetricError,
    call_metric,
    generation_sample,
    metric_values,
)
from rfcli.trainers.rng import capture_rng

CALLS: list[dict[str, Any]] = []


def recording_metric(completions: list[str], **kwargs: Any) -> dict[str, float]:
    """Remembers its keywords; scores the share of non-empty completions and their mean length."""
    CALLS.append({"completions": completions, **kwargs})
    return {"non_empty": sum(bool(c) for c in completions) / len(completions), "chars": 1.0}


def failing_metric(completions: list[str], **kwargs: Any) -> float:
    return 1 / 0


def unkeyworded_metric(completions: list[str]) -> float:
    return 0.0


QA_ROWS = [
    {
        "prompt": [{"role": "user", "content": f"question {index}"}],
        "completion": [{"role": "assistant", "content": f"answer {index}"}],
        "topic": f"topic {index}",
    }
    for index in range(5)
]


def test_sample_is_the_first_rows_with_their_reference_answers_and_columns() -> None:
    sample = generation_sample(Dataset.from_list(QA_ROWS), num_samples=3)
    assert sample.prompts == [row["prompt"] for row in QA_ROWS[:3]]
    assert sample.references == ["answer 0", "answer 1", "answer 2"]
    assert sample.columns["topic"] == ["topic 0", "topic 1", "topic 2"]


def test_a_conversation_is_completed_from_before_its_last_answer() -> None:
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"},
        {"role": "assistant", "content": "fine"},
    ]
    sample = generation_sample(Dataset.from_list([{"messages": conversation}]), num_samples=8)
    assert sample.prompts == [conversation[:3]]
    assert sample.references == ["fine"]


@pytest.mark.parametrize(
    ("row", "references"),
    [
        ({"prompt": "2 + 2 =", "chosen": " 4", "rejected": " 5"}, [" 4"]),
        ({"prompt": "What is 2 plus 2?", "answer": 4}, None),
    ],
)
def test_references_come_from_the_chosen_answer_or_are_none(
    row: dict[str, Any], references: list[str] | None
) -> None:
    assert generation_sample(Dataset.from_list([row]), num_samples=1).references == references


def test_data_without_prompts_cannot_be_generated_for() -> None:
    with pytest.raises(ConfigError, match="'prompt' or 'messages'; the eval data has 'text'") as error:
        check_prompt_columns(Dataset.from_list([{"text": "hello"}]))
    assert error.value.key == "eval.metrics"


def test_a_float_is_logged_under_the_function_name_and_a_dict_per_key() -> None:
    assert metric_values("my.metrics:f1", 0.5) == {"eval_f1": 0.5}
    assert metric_values("my.metrics:rouge", {"r1": 1, "rl": 0.25}) == {
        "eval_rouge/r1": 1.0,
        "eval_rouge/rl": 0.25,
    }


@pytest.mark.parametrize("result", [[0.5], "0.5", None, True, {}, {"a": "x"}])
def test_a_result_that_is_not_numbers_is_an_error_naming_the_metric(result: Any) -> None:
    with pytest.raises(MetricError, match=r"eval metric 'my.metrics:f1' returned .*expected a float"):
        metric_values("my.metrics:f1", result)


def test_a_metric_that_raises_is_reported_with_its_name_and_its_own_line() -> None:
    sample = GenerationSample(prompts=["p"], references=None, columns={})
    spec = f"{__name__}:failing_metric"
    with pytest.raises(MetricError) as error:
        call_metric(spec, failing_metric, sample, ["c"])
    line = failing_metric.__code__.co_firstlineno + 1
    assert describe_error(error.value) == (
        f"MetricError: eval metric '{spec}' raised ZeroDivisionError: division by zero "
        f"(at {Path(__file__).name}:{line})"
    )


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    path = builtin_model_path("rf-tiny")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_generating_leaves_the_generators_and_train_mode_as_they_were(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    settings = GenerateConfig(max_new_tokens=6, num_samples=5, batch_size=2, do_sample=True)
    scorer = GenerationMetrics(
        [f"{__name__}:recording_metric"], settings, tokenizer, Dataset.from_list(QA_ROWS)
    )
    model.train()
    before = capture_rng()
    CALLS.clear()
    scores = scorer.score(model)
    after = capture_rng()
    assert model.training
    assert torch.equal(before["cpu"], after["cpu"]) and before["python"] == after["python"]
    assert set(scores) == {"eval_recording_metric/non_empty", "eval_recording_metric/chars", SECONDS_KEY}
    # Sampling drew from the generators: restored, the next sample is the same one again.
    scorer.score(model)
    (first, second) = CALLS
    assert first["completions"] == second["completions"]
    assert len(first["completions"]) == 5
    assert first["references"] == [f"answer {index}" for index in range(5)]
    assert first["topic"] == [f"topic {index}" for index in range(5)]
    assert first["prompts"] == [row["prompt"] for row in QA_ROWS]


def test_greedy_generation_continues_each_prompt_as_it_would_alone(tiny: tuple[Any, Any]) -> None:
    """Left padding in a batch must not change what a short prompt generates."""
    model, tokenizer = tiny
    rows = [{"prompt": "hello"}, {"prompt": "a much longer prompt than the first one"}]
    settings = GenerateConfig(max_new_tokens=5, num_samples=2, batch_size=2)
    batched = GenerationMetrics(
        [f"{__name__}:recording_metric"], settings, tokenizer, Dataset.from_list(rows)
    )
    alone = GenerationMetrics(
        [f"{__name__}:recording_metric"],
        GenerateConfig(max_new_tokens=5, num_samples=1),
        tokenizer,
        Dataset.from_list(rows[:1]),
    )
    assert batched.complete(model)[0] == alone.complete(model)[0]


def test_generation_uses_the_kv_cache_even_where_the_trainer_turned_it_off(tiny: tuple[Any, Any]) -> None:
    """The Trainer sets `model.config.use_cache = False` for training; each new token must still be one
    forward of one position, not of the whole sequence again."""
    model, tokenizer = tiny
    model.config.use_cache = False
    model.generation_config.use_cache = False
    lengths: list[int] = []
    hook = model.model.layers[0].register_forward_hook(
        lambda module, args, output: lengths.append(args[0].shape[1])
    )
    try:
        settings = GenerateConfig(max_new_tokens=4, num_samples=1)
        GenerationMetrics(
            [f"{__name__}:recording_metric"], settings, tokenizer, Dataset.from_list(QA_ROWS)
        ).complete(model)
    finally:
        hook.remove()
        model.config.use_cache = True
    assert len(lengths) == 4 and lengths[0] > 1 and lengths[1:] == [1, 1, 1]


def run_config(**changes: Any) -> dict[str, Any]:
    return {
        "name": "unit",
        "model": {"name": "rf-tiny"},
        "data": {"train": {"source": "recipes.qa_data:chatterbot_qa"}, "eval_fraction": 0.1},
        "training": {"max_steps": 2},
        "eval": {"metrics": [f"{__name__}:recording_metric", "recipes.qa_metrics:token_f1"]},
        **changes,
    }


def test_a_config_with_metrics_compiles() -> None:
    config = build_run_config(run_config())
    assert config.eval.metrics[1] == "recipes.qa_metrics:token_f1"
    assert (config.eval.generate.max_new_tokens, config.eval.generate.do_sample) == (32, False)


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"eval": {"metrics": ["recipes.qa_metrics:f1"]}}, "eval.metrics[0]", "has no function 'f1'"),
        ({"eval": {"metrics": ["nowhere:f1"]}}, "eval.metrics[0]", "cannot import module 'nowhere'"),
        (
            {"eval": {"metrics": [f"{__name__}:unkeyworded_metric"]}},
            "eval.metrics[0]",
            "must accept keywords",
        ),
        (
            {"eval": {"metrics": ["recipes.qa_metrics:exact_match", "recipes.math_metrics:exact_match"]}},
            "eval.metrics[1]",
            "would both be logged as eval_exact_match",
        ),
        (
            {"data": {"train": {"source": "recipes.qa_data:chatterbot_qa"}}},
            "eval.metrics",
            "need eval data: set data.eval or data.eval_fraction",
        ),
        (
            {"eval": {"generate": {"max_new_tokens": 0}}},
            "eval.generate.max_new_tokens",
            "expected an integer >= 1",
        ),
        ({"eval": {"generate": {"temperature": 0}}}, "eval.generate.temperature", "expected a number > 0"),
        (
            {"eval": {"generate": {"max_tokens": 8}}},
            "eval.generate.max_tokens",
            "did you mean 'max_new_tokens'",
        ),
    ],
)
def test_bad_eval_settings_are_clear_errors(changes: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build_run_config(run_config(**changes))
    assert error.value.key == key


def test_nan_scores_are_kept_as_nan() -> None:
    assert math.isnan(metric_values("m:f", float("nan"))["eval_f"])
