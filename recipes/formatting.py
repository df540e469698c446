"""Formatting functions: one data row in, the trainer's columns out (`data.formatting` in a config)."""

from __future__ import annotations

from typing import Any

SUPPORT_SYSTEM_PROMPT = "You are a helpful and friendly customer support assistant."


def customer_support(row: dict[str, Any]) -> dict[str, Any]:
    """Bitext customer-support rows (instruction/response) -> conversational prompt/completion."""
    return {
        "prompt": [
            {"role": "system", "content": SUPPORT_SYSTEM_PROMPT},
            {"role": "user", "content": row["instruction"]},
        ],
        "completion": [{"role": "assistant", "content": row["response"]}],
    }
