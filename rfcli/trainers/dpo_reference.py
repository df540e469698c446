"""DPO's reference model for runs that share one base model, and its log-probs, scored only for the
rows the runs read and shared across runs.

Three things TRL 1.16's `DPOTrainer` does not do for rf:

- With a PeftModel and `ref_model=None`, its `__init__` copies an adapter named "default" into a new
  adapter "ref" and scores the reference with it. rf's adapters are `run_<id>` on one shared model, so
  that raises KeyError 'default' (and "'ref' already exists" for the next run). A new adapter's
  reference is the base model, which TRL's own loss uses (adapters disabled) when no "ref" adapter
  exists: `BaseModelReference` steps past that branch and leaves TRL on that path.
- With `precompute_ref_log_probs`, TRL scores every row of the training set before step 1. A short
  trial reads a fraction of them (8 steps of 4 rows read 32 of 144), and a policy stops most runs
  early. rf scores the reference batch by batch instead, for the rows a batch holds that nobody has
  scored yet, just before the loss reads them; evaluation's rows are scored at the first evaluation.
- The reference log-probs depend on the reference model, the row's tokens and the scoring settings,
  not on the run. `ReferenceRows` keeps them by row content, in the worker's memory and, at every
  chunk boundary, on disk in the experiment folder, where every worker and every later `rf run` of
  the experiment finds them.

A full fine-tune's reference is the base model as loaded; TRL would score it before training changes
the weights. rf scores by batch while training, so it keeps the base model loaded (once per worker,
frozen, like a `model.reference`) for those runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from peft import PeftModel
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from rfcli.trainers.reference_metrics import reference_metrics

if TYPE_CHECKING:
    from datasets import Dataset

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
SCORING_SETTINGS = ("ld_alpha", "padding_free")
"""DPOConfig fields that change how a row's tokens are scored (which tokens: the row's key says)."""
Scorer = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


class AdaptersDisabled(torch.nn.Module):
    """Stands in for `ref_model` during `DPOTrainer.__init__` only, so TRL does not look for a "default"
    adapter; it holds the model's config but not the model, so nothing TRL does to it reaches the model."""

    def __init__(self, model: PeftModel) -> None:
        super().__init__()
        self.config = model.config


@dataclass(frozen=True)
class ReferenceCache:
    """Where the experiment keeps reference log-probs, and what the reference model is (its identity)."""

    folder: Path
    reference: str
    """The reference model's identity: its name, loading kwargs and tokenizer (see `reference_identity`)."""

    def rows(self, settings: Mapping[str, Any]) -> ReferenceRows:
        """This worker's table for the reference scored with `settings`, shared by its runs."""
        digest = hashlib.sha256(
            json.dumps([self.reference, dict(settings)], sort_keys=True, default=str).encode()
        )
        folder = self.folder / digest.hexdigest()[:16]
        with _TABLES_LOCK:
            return _TABLES.setdefault(folder, ReferenceRows(folder))


def reference_identity(name: str, kwargs: dict[str, Any], tokenizer: str | None) -> str:
    return json.dumps({"name": name, "kwargs": kwargs, "tokenizer": tokenizer}, sort_keys=True, default=str)


def row_keys(batch: Mapping[str, torch.Tensor]) -> list[str]:
    """One key per preference row of a collated DPO batch (its chosen sequences, then its rejected
    ones): a hash of the tokens of both sequences and which of them are completion, padding left out.
    The same row tokenized the same way has the same key in any batch, run or worker."""
    ids, attention, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    rows = ids.shape[0] // 2
    keys = []
    for row in range(rows):
        digest = hashlib.sha1()
        for sequence in (row, rows + row):
            kept = attention[sequence].bool()
            digest.update(ids[sequence][kept].cpu().numpy().tobytes())
            digest.update(b"|")
            digest.update(completion[sequence][kept].cpu().numpy().tobytes())
            digest.update(b"#")
        keys.append(digest.hexdigest())
    return keys


def select_rows(batch: Mapping[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    """The collated batch of only these preference rows (each one's chosen and rejected sequence)."""
    total = batch["input_ids"].shape[0]
    index = torch.tensor(rows + [total // 2 + row for row in rows], device=batch["input_ids"].device)
    return {
        key: value[index] if isinstance(value, torch.Tensor) and value.shape[:1] == (total,) else value
        for key, value in batch.items()
    }


class ReferenceRows:
    """Reference log-probs (chosen, rejected) by row key, for one reference model and scoring settings.

    Rows scored here are written to `folder` at each chunk boundary (`save`), one file per save, each
    written to a scratch name and renamed, so a reader sees whole files only; rows another worker
    wrote are read (`load_new`) before scoring anything again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._values: dict[str, tuple[float, float]] = {}
        self._unsaved: dict[str, tuple[float, float]] = {}
        self._read: set[str] = set()
        self._lock = threading.Lock()
        """A run's checkpoint is written on a thread of its own while the next run of the worker scores."""

    def __len__(self) -> int:
        return len(self._values)

    def logps(
        self, batch: Mapping[str, torch.Tensor], score: Scorer
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The batch's reference log-probs, scoring (with `score`) only rows no one has scored; and how
        many rows it scored."""
        keys = row_keys(batch)
        missing = self._missing(keys)
        if missing:
            self.load_new()
            missing = self._missing(keys)
        if missing:
            chosen, rejected = score(select_rows(batch, missing))
            with self._lock:
                for row, value in zip(
                    missing, zip(chosen.tolist(), rejected.tolist(), strict=True), strict=True
                ):
                    self._values[keys[row]] = self._unsaved[keys[row]] = value
        device = batch["input_ids"].device
        values = [self._values[key] for key in keys]
        chosen_all = torch.tensor([chosen for chosen, _ in values], dtype=torch.float32, device=device)
        rejected_all = torch.tensor([rejected for _, rejected in values], dtype=torch.float32, device=device)
        return chosen_all, rejected_all, len(missing)

    def _missing(self, keys: list[str]) -> list[int]:
        """The rows to score: one per key no one has scored, so a row repeated within the batch (the
        same tokens twice) is scored, and counted, once."""
        first: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key not in self._values:
                first.setdefault(key, row)
        return list(first.values())

    def load_new(self) -> None:
        """Read the files written since the last look (by this worker or another)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.pt")):
            if path.name in self._read:
                continue
            saved = torch.load(path, weights_only=True)
            with self._lock:
                for key, chosen, rejected in zip(
                    saved["keys"], saved["chosen"].tolist(), saved["rejected"].tolist(), strict=True
                ):
                    self._values.setdefault(key, (chosen, rejected))
                self._read.add(path.name)

    def save(self) -> None:
        """Write the rows scored since the last save, as one new file."""
        with self._lock:
            rows, self._unsaved = self._unsaved, {}
        if not rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.pt"
        handle, scratch = tempfile.mkstemp(prefix=".", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(
                    {
                        "keys": list(rows),
                        "chosen": torch.tensor([chosen for chosen, _ in rows.values()]),
                        "rejected": torch.tensor([rejected for _, rejected in rows.values()]),
                    },
                    file,
                )
            os.replace(scratch, self.folder / name)
        finally:
            if os.path.exists(scratch):
                os.remove(scratch)
        with self._lock:
            self._read.add(name)


_TABLES: dict[Path, ReferenceRows] = {}
_TABLES_LOCK = threading.Lock()


class SaveReferenceRows(TrainerCallback):
    """At every chunk boundary (where rf saves a checkpoint), the rows scored since go to disk."""

    def __init__(self, rows: ReferenceRows) -> None:
        self.rows = rows

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.rows.save()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.rows.save()


class BaseModelReference:
    """Mixin before TRL's DPOTrainer: the shared-base-model reference, scored by batch and shared."""

    ref_model: Any
    model: Any
    args: Any
    precompute_ref_logps: bool

    def __init__(self, *args: Any, reference_cache: ReferenceCache, **kwargs: Any) -> None:
        model = kwargs.get("model")
        if isinstance(model, PeftModel) and kwargs.get("ref_model") is None:
            kwargs["ref_model"] = AdaptersDisabled(model)
        super().__init__(*args, **kwargs)
        if isinstance(self.ref_model, AdaptersDisabled):
            self.ref_model = None  # TRL scores the reference with the run's model, adapters disabled
        settings = {name: getattr(self.args, name, None) for name in SCORING_SETTINGS}
        self.reference_rows = reference_cache.rows(settings)
        self.reference_rows.load_new()
        self._scored = (0, 0.0)
        """Rows scored since the last log, and the seconds it took."""
        self.add_callback(SaveReferenceRows(self.reference_rows))  # type: ignore[attr-defined]

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """TRL would score every row here, before training; rf scores each batch's rows as the loss
        needs them (`compute_loss`), so nothing is scored now."""
        return dataset.remove_columns([c for c in REFERENCE_COLUMNS if c in dataset.column_names])

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if self.precompute_ref_logps and REFERENCE_COLUMNS[0] not in inputs:
            started = time.perf_counter()
            chosen, rejected, scored = self.reference_rows.logps(inputs, self._score_reference)
            inputs = {**inputs, REFERENCE_COLUMNS[0]: chosen, REFERENCE_COLUMNS[1]: rejected}
            if scored:
                rows, seconds = self._scored
                self._scored = (rows + scored, seconds + time.perf_counter() - started)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]

    def _score_reference(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """TRL's own reference scoring of a collated batch, with the model in eval mode (as TRL's
        precompute before training has it): no dropout, and no draw from the run's generators."""
        scorer = self.ref_model or self.model
        training = scorer.training
        scorer.eval()
        try:
            chosen, rejected = self.compute_ref_log_probs(scorer, batch)  # type: ignore[attr-defined]
        finally:
            scorer.train(training)
        return chosen, rejected

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """With the step (or the evaluation) that scored reference rows: how many, and how long."""
        rows, seconds = self._scored
        if rows:
            evaluation = any(key.startswith("eval_") for key in logs)
            logs = {**logs, **reference_metrics(rows, seconds, evaluation)}
            self._scored = (0, 0.0)
        super().log(logs, start_time)  # type: ignore[misc]
