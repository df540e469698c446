"""SFT evaluation that forwards each batch's rows in groups of similar length, with the same result.

rf evaluates at every chunk boundary, so evaluation costs K configs x chunks forwards where a plain
sweep costs one per config, and a padded batch spends much of each forward on padding: the 32 eval
rows of the time-to-best benchmark (15 to 64 tokens, 32 on average) fill half of a 32 x 64 batch.
TRL's SFT evaluation reads only per-token fields of its fused LM head (log-probabilities, entropy,
top-1 hits, the label mask), which are zero on padding, and sums them over the batch. So each group
(see `length_groups`) is forwarded trimmed to its own longest row, and its per-token fields are
put back where the batch's rows and positions are: the loss and metrics TRL computes from them are
those of the padded batch, up to float rounding. A right-padded row's tokens never see the padding
after them, which is why only right-padded batches are grouped; anything else (training, packed or
left-padded batches, MoE auxiliary losses, extra inputs) goes through unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from rfcli.trainers.length_groups import length_groups

FORWARD_OVERHEAD = 256
"""The fixed cost of one more forward, in padded token slots (`length_groups`); measured on rf-small
on 2 CPU cores: a 32 x 64 batch in 0.91 s, its rows sorted in 2 groups in 0.53 s, in 8 in 0.60 s."""


class GroupedEval(Trainer):
    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if self.model is not None and not self.model.training and not return_outputs:
            model = LengthGroupedForward(model)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class LengthGroupedForward:
    """Calls `model` as TRL's SFT evaluation does, one length group at a time."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, **inputs: Any) -> Any:
        mask = inputs.get("attention_mask")
        if not (inputs.get("fused_lm_head") and isinstance(mask, torch.Tensor) and groupable(inputs, mask)):
            return self.model(**inputs)
        lengths = mask.sum(dim=1).tolist()
        groups = length_groups(lengths, FORWARD_OVERHEAD)
        if len(groups) == 1:
            return self.model(**inputs)
        return self._merged(inputs, lengths, groups)

    def _merged(self, inputs: dict[str, Any], lengths: list[int], groups: list[list[int]]) -> Any:
        rows, width = inputs["attention_mask"].shape
        fields: dict[str, torch.Tensor] = {}
        output: Any = None
        for group in groups:
            index = torch.tensor(group, device=inputs["attention_mask"].device)
            longest = max(lengths[row] for row in group)
            part = {
                key: value[index, :longest] if isinstance(value, torch.Tensor) else value
                for key, value in inputs.items()
            }
            output = self.model(**part)
            for key, value in output.items():
                if key == "loss":
                    continue
                if not (isinstance(value, torch.Tensor) and value.dim() >= 2 and len(value) == len(group)):
                    return self.model(**inputs)  # a field that is not per token (an MoE auxiliary loss)
                shift = longest - value.shape[1]  # the fused head scores positions 1.. of each row
                if key not in fields:
                    fields[key] = value.new_zeros((rows, width - shift, *value.shape[2:]))
                fields[key][index, : value.shape[1]] = value
        loss = -fields["log_probs"].sum() / fields["label_mask"].sum().clamp(min=1)
        return type(output)(loss=loss, **fields)


def groupable(inputs: dict[str, Any], mask: torch.Tensor) -> bool:
    """Every tensor is a (rows, positions) one like the mask, and every row's padding is at its end."""
    if mask.dim() != 2 or mask.shape[1] < 2 or inputs.get("num_items_in_batch") is not None:
        return False
    if "shift_labels" in inputs or "labels" not in inputs:
        return False
    if any(isinstance(value, torch.Tensor) and value.shape != mask.shape for value in inputs.values()):
        return False
    return bool(mask[:, 0].all() and (mask.cumprod(dim=1).sum(dim=1) == mask.sum(dim=1)).all())
