"""What a run will train, from its data and settings: optimizer steps, chunks, and tokens.

A row's tokens are counted the way its trainer tokenizes it: a chat template for conversational
rows (prompt and completion together), plain text otherwise, each sequence cut at `max_length`.
A DPO row is two sequences (prompt + chosen, prompt + rejected); a GRPO row is its prompt and
`max_completion_length` generated tokens (an upper bound), and a GRPO step's rows are completions,
`num_generations` of each prompt.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rfcli.trainers.chunking import chunk_boundaries, optimizer_steps, steps_per_epoch

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, TrainingArguments

    from rfcli.config.schema import ExperimentConfig


@dataclass(frozen=True)
class Workload:
    steps: int
    chunks: int
    rows_per_step: int
    """Rows one optimizer step reads: batch x gradient accumulation (GRPO: completions)."""
    tokens_per_row: float
    """The mean over the training rows, every sequence of a row together."""
    longest_sequence: int
    """The longest sequence after truncation: a micro-batch pads to it at worst."""
    sequences_per_row: int

    @property
    def tokens_per_step(self) -> float:
        return self.rows_per_step * self.tokens_per_row

    @property
    def tokens(self) -> int:
        return round(self.steps * self.tokens_per_step)


def run_workload(
    config: ExperimentConfig, args: TrainingArguments, rows: int, lengths: Sequence[Sequence[int]]
) -> Workload:
    """The run's steps and chunks from its `rows` training rows, and its tokens from `lengths`
    (`row_lengths` of those rows)."""
    # GRPO's batches are of completions: each prompt's `num_generations`, `num_iterations` times over.
    repeats = 1
    if config.trainer == "grpo":
        repeats = int(getattr(args, "num_generations", 1) or 1) * int(getattr(args, "num_iterations", 1) or 1)
    batches = math.ceil(rows * repeats / args.per_device_train_batch_size)
    epoch_steps = steps_per_epoch(batches, args.gradient_accumulation_steps)
    steps = optimizer_steps(epoch_steps, args.num_train_epochs, args.max_steps)
    return Workload(
        steps=steps,
        chunks=len(chunk_boundaries(epoch_steps, config.num_chunks, steps)),
        rows_per_step=args.per_device_train_batch_size * args.gradient_accumulation_steps,
        tokens_per_row=statistics.fmean(sum(row) for row in lengths) if lengths else 0.0,
        longest_sequence=max((max(row) for row in lengths), default=0),
        sequences_per_row=max((len(row) for row in lengths), default=1),
    )


def row_lengths(
    train: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int | None, completion: int
) -> list[list[int]]:
    """The token count of each sequence each row makes (see the module doc), cut at `max_length`;
    `completion`: the tokens a GRPO generation adds (0 for the other trainers)."""
    columns = set(train.column_names)
    if {"chosen", "rejected"} <= columns:
        sequences = [joined_column(train, "chosen"), joined_column(train, "rejected")]
    elif "completion" in columns:
        sequences = [joined_column(train, "completion")]
    else:
        column = next(name for name in ("messages", "text", "prompt") if name in columns)
        sequences = [list(train[column])]
    counts = [token_counts(texts, tokenizer, generation_prompt=completion > 0) for texts in sequences]
    return [
        [min(count + completion, max_length) if max_length else count + completion for count in row]
        for row in zip(*counts, strict=True)
    ]


def joined_column(train: Dataset, column: str) -> list[Any]:
    return [joined(prompt, part) for prompt, part in zip(train["prompt"], train[column], strict=True)]


def joined(prompt: Any, completion: Any) -> Any:
    """A prompt and its completion as one sequence: messages one after the other, or text."""
    if isinstance(prompt, list) and isinstance(completion, list):
        return prompt + completion
    return f"{prompt}{completion}"


def token_counts(texts: list[Any], tokenizer: PreTrainedTokenizerBase, generation_prompt: bool) -> list[int]:
    """Tokens of each text: through the chat template for conversations (as TRL applies it), plain
    text with the eos TRL appends."""
    if texts and isinstance(texts[0], list):
        encoded: Any = tokenizer.apply_chat_template(
            texts, tokenize=True, add_generation_prompt=generation_prompt
        )
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return [len(row) for row in ids]
    return [len(row) + 1 for row in tokenizer(texts)["input_ids"]]
