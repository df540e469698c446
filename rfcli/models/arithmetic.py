""" "What is a plus b?" problems: the format `rf-tiny-math` is pretrained on and the GRPO recipes use.

A random model never ends its generations, so GRPO rewards stay flat; a short full fine-tune on
these problems teaches the tiny model the answer format (and some sums), so rewards vary.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MAX_OPERAND = 20
ANSWER_PATTERN = re.compile(r"^The answer is (-?\d+)\.$")


def question(a: int, b: int) -> str:
    return f"What is {a} plus {b}?"


def answer(total: int) -> str:
    return f"The answer is {total}."


def addition_problems(count: int, seed: int) -> list[tuple[int, int]]:
    """`count` operand pairs drawn with a fixed seed (repeats allowed: there are only 400 pairs)."""
    rng = random.Random(seed)
    return [(rng.randrange(MAX_OPERAND), rng.randrange(MAX_OPERAND)) for _ in range(count)]


def parse_answer(text: str) -> int | None:
    """The number of a well-formed answer, else None."""
    match = ANSWER_PATTERN.match(text.strip())
    return int(match.group(1)) if match else None


def pretrain_arithmetic(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, steps: int, seed: int
) -> None:
    """Full fine-tune on chat-formatted problems, loss on every token: single-threaded and seeded, so
    the same steps give the same weights. 32 rows x about 30 tokens per step."""
    import torch

    batch_size = 32
    pairs = addition_problems(steps * batch_size, seed)
    texts = [
        tokenizer.apply_chat_template(
            [
                {"role": "user", "content": question(a, b)},
                {"role": "assistant", "content": answer(a + b)},
            ],
            tokenize=False,
        )
        for a, b in pairs
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from more, and a busy CPU slows threads a lot
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    for step in range(steps):
        batch = tokenizer(
            texts[step * batch_size : (step + 1) * batch_size], return_tensors="pt", padding=True
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    torch.set_num_threads(threads)
    model.eval()
