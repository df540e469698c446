"""DPO's reference model for runs that share one base model, and its log-probs shared across runs.

Two things TRL 1.16's `DPOTrainer` does not do for rf:

- With a PeftModel and `ref_model=None`, its `__init__` copies an adapter named "default" into a new
  adapter "ref" and scores the reference with it. rf's adapters are `run_<id>` on one shared model, so
  that raises KeyError 'default' (and "'ref' already exists" for the next run). A new adapter's
  reference is the base model, which TRL's own loss uses (adapters disabled) when no "ref" adapter
  exists: `BaseModelReference` steps past that branch and leaves TRL on that path.
- The reference log-probs depend on the reference model, the data and its tokenization, not on the
  run: `SharedReferenceLogps` computes them once per experiment (TRL's `precompute_ref_log_probs`)
  and keeps them on disk, keyed by a fingerprint of all three, for every DPO run that matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from peft import PeftModel

if TYPE_CHECKING:
    from datasets import Dataset

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
TOKENIZATION_SETTINGS = ("max_length", "truncation_mode", "padding_free", "pad_to_multiple_of", "ld_alpha")
"""DPOConfig fields that change what the reference scores (which tokens, and how they are summed)."""


class AdaptersDisabled(torch.nn.Module):
    """Stands in for `ref_model` during `DPOTrainer.__init__` only, so TRL does not look for a "default"
    adapter; it holds the model's config but not the model, so nothing TRL does to it reaches the model."""

    def __init__(self, model: PeftModel) -> None:
        super().__init__()
        self.config = model.config


@dataclass(frozen=True)
class ReferenceCache:
    """Where a run's reference log-probs are kept, and what the reference model is (its identity)."""

    folder: Path
    reference: str
    """The reference model's identity: its name, loading kwargs and tokenizer (see `reference_identity`)."""

    def path(self, dataset: Dataset, settings: dict[str, Any]) -> Path:
        return self.folder / f"{reference_fingerprint(self.reference, dataset, settings)}.pt"


def reference_identity(name: str, kwargs: dict[str, Any], tokenizer: str | None) -> str:
    return json.dumps({"name": name, "kwargs": kwargs, "tokenizer": tokenizer}, sort_keys=True, default=str)


def reference_fingerprint(reference: str, dataset: Dataset, settings: dict[str, Any]) -> str:
    """A hash of the reference model's identity, the tokenized rows (in order) and the settings that
    decide which tokens are scored. The rows are hashed by content, so the same data tokenized the same
    way matches across runs and workers whatever the run's other settings."""
    digest = hashlib.sha256(reference.encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    tokenized = dataset.remove_columns([c for c in REFERENCE_COLUMNS if c in dataset.column_names])
    for column in sorted(tokenized.column_names):
        digest.update(column.encode())
        digest.update(json.dumps(tokenized[column], default=str).encode())
    return digest.hexdigest()[:16]


def save_logps(path: Path, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    """Written to a scratch file and renamed: a reader sees a whole file or none, and two workers
    computing the same file at once both end with one of the (identical) results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({"chosen": chosen, "rejected": rejected}, file)
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)


def with_logps(dataset: Dataset, path: Path) -> Dataset:
    from datasets import Dataset, concatenate_datasets

    saved = torch.load(path, weights_only=True)
    if len(saved["chosen"]) != len(dataset):
        raise ValueError(f"{path} holds {len(saved['chosen'])} reference log-probs for {len(dataset)} rows")
    columns = Dataset.from_dict(
        {"ref_chosen_logps": saved["chosen"].numpy(), "ref_rejected_logps": saved["rejected"].numpy()}
    )
    return concatenate_datasets([dataset, columns], axis=1)


class BaseModelReference:
    """Mixin before TRL's DPOTrainer: the shared-base-model reference and the shared log-prob cache."""

    ref_model: Any
    args: Any

    def __init__(self, *args: Any, reference_cache: ReferenceCache | None = None, **kwargs: Any) -> None:
        self.reference_cache = reference_cache
        model = kwargs.get("model")
        if isinstance(model, PeftModel) and kwargs.get("ref_model") is None:
            kwargs["ref_model"] = AdaptersDisabled(model)
        super().__init__(*args, **kwargs)
        if isinstance(self.ref_model, AdaptersDisabled):
            self.ref_model = None  # TRL scores the reference with the run's model, adapters disabled

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """TRL's precompute, read from (or written to) the experiment's cache when there is one."""
        dataset = dataset.remove_columns([c for c in REFERENCE_COLUMNS if c in dataset.column_names])
        cache = self.reference_cache
        path = cache.path(dataset, self._tokenization_settings()) if cache is not None else None
        if path is not None and path.is_file():
            return with_logps(dataset, path)
        reference = self.ref_model
        if isinstance(reference, AdaptersDisabled):
            self.ref_model = None  # called from __init__: TRL disables the adapters itself when it is None
        try:
            computed: Dataset = super()._precompute_ref_logps(dataset, name, batch_size)  # type: ignore[misc]
        finally:
            self.ref_model = reference
        if path is not None:
            chosen, rejected = (
                torch.tensor(computed[column], dtype=torch.float32) for column in REFERENCE_COLUMNS
            )
            save_logps(path, chosen, rejected)
        return computed

    def _tokenization_settings(self) -> dict[str, Any]:
        return {name: getattr(self.args, name, None) for name in TOKENIZATION_SETTINGS}
