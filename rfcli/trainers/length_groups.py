"""Which rows of an evaluation batch to forward together, so that less of the batch is padding.

A batch is padded to its longest row, and a forward costs about what its padded size is. Cut into
groups of rows of similar length, each group padded only to its own longest row, the batch costs
less, but every extra forward has a fixed cost of its own. The groups chosen minimize

    sum over groups of (rows x longest row + `overhead`)

where `overhead` is that fixed cost in padded token slots. With rows sorted by length, the best
groups are runs of neighbours, found exactly by dynamic programming over the cut points.

Worked example (lengths 2, 3, 3, 9, 10; overhead 8): one forward costs 5 x 10 + 8 = 58; the rows
of length 2 and 3 on their own and the two long ones on theirs cost 3 x 3 + 8 + 2 x 10 + 8 = 45,
the best there is: a third group (the 2 alone) would save 1 slot and cost 8.
"""

from __future__ import annotations

MAX_ROWS = 1024
"""Above this many rows the planning (quadratic in rows) is skipped: the batch is one group."""


def length_groups(lengths: list[int], overhead: int) -> list[list[int]]:
    """Row indices in groups of similar length, shortest first; one group when cutting does not pay."""
    if not 1 < len(lengths) <= MAX_ROWS:
        return [list(range(len(lengths)))] if lengths else []
    order = sorted(range(len(lengths)), key=lambda row: lengths[row])
    sorted_lengths = [lengths[row] for row in order]
    # best[j]: the least cost of the first j sorted rows; cut[j]: where their last group starts.
    best = [0] * (len(order) + 1)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = sorted_lengths[end - 1]
        best[end], cut[end] = min(
            (best[start] + (end - start) * longest + overhead, start) for start in range(end)
        )
    groups: list[list[int]] = []
    end = len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]
