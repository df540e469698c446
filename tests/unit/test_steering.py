"""The live table's keys, without a terminal: what each key asks for, and how bytes become keys."""

from __future__ import annotations

from rfcli.ui.keys import decode
from rfcli.ui.steering import BACKSPACE, DOWN, ENTER, ESCAPE, UP, Request, Steering

RUNS = [1, 2, 3]


def press_all(steering: Steering, keys: list[str]) -> list[Request]:
    return [request for key in keys if (request := steering.press(key, RUNS)) is not None]


def test_selection_moves_and_stops_at_the_ends() -> None:
    steering = Steering()
    assert press_all(steering, [UP, DOWN, "j", DOWN, DOWN, "s"]) == [Request("stop", 3)]
    assert press_all(steering, ["k", "r"]) == [Request("resume", 2)]


def test_delete_asks_first() -> None:
    steering = Steering()
    assert press_all(steering, ["d"]) == []
    assert "delete run 1" in steering.footer().plain
    assert press_all(steering, ["n"]) == []
    assert press_all(steering, ["d", "y"]) == [Request("delete", 1)]


def test_clone_takes_overrides_typed_at_the_prompt() -> None:
    steering = Steering()
    typed = list("training.learning_rate=1e-3 lora.r=16x") + [BACKSPACE]
    assert press_all(steering, [DOWN, "w", *typed]) == []
    assert steering.footer().plain.endswith("lora.r=16")
    assert press_all(steering, [ENTER]) == [
        Request("clone", 2, ["training.learning_rate=1e-3", "lora.r=16"], warm=True)
    ]
    assert press_all(steering, ["c", "x", ESCAPE, "s"]) == [Request("stop", 2)]  # cancelled, keys work again


def test_q_leaves_but_not_while_typing() -> None:
    steering = Steering()
    assert press_all(steering, ["c", "q"]) == []
    assert press_all(steering, [ESCAPE, "q"]) == [Request("leave")]


def test_terminal_bytes_become_keys() -> None:
    assert decode(b"\x1b[A\x1b[Bs\r\x7f\x1b") == [UP, DOWN, "s", ENTER, BACKSPACE, ESCAPE]
