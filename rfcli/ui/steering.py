"""The live table's keys: move the selection, steer the selected run, or leave the view.

Pure: a key goes in, at most one request comes out, so the keys are tested without a terminal.
The requests are given as `rf ctl` gives its commands (`engine/commands.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

HELP = "↑/↓ select · s stop · r resume · d delete · c clone · w warm clone · q leave (training pauses)"
UP, DOWN, ENTER, ESCAPE, BACKSPACE = "up", "down", "enter", "escape", "backspace"


@dataclass(frozen=True)
class Request:
    verb: str
    """stop, resume, delete, clone, or leave."""
    run_id: int | None = None
    overrides: list[str] = field(default_factory=list)
    warm: bool = False


@dataclass
class Steering:
    selected: int = 0
    """Index of the selected row."""
    prompt: str | None = None
    """What the footer asks while a delete waits for y/n or a clone for its overrides."""
    typed: str = ""
    note: str = ""
    _pending: Request | None = None

    def press(self, key: str, run_ids: list[int]) -> Request | None:
        if not run_ids:
            return Request("leave") if key == "q" and self.prompt is None else None
        self.selected = min(self.selected, len(run_ids) - 1)
        if self.prompt is not None:
            return self._answer(key)
        run_id = run_ids[self.selected]
        if key in (UP, "k"):
            self.selected = max(0, self.selected - 1)
        elif key in (DOWN, "j"):
            self.selected = min(len(run_ids) - 1, self.selected + 1)
        elif key in ("s", "r"):
            return Request("stop" if key == "s" else "resume", run_id)
        elif key == "d":
            self._ask(f"delete run {run_id} and its checkpoints? y/n", Request("delete", run_id))
        elif key in ("c", "w"):
            warm = key == "w"
            kind = "warm clone" if warm else "clone"
            self._ask(
                f"{kind} of run {run_id}, overrides (key=value ...), Enter to send, Esc to cancel:",
                Request("clone", run_id, warm=warm),
            )
        elif key == "q":
            return Request("leave")
        return None

    def footer(self) -> Text:
        if self.prompt is not None:
            return Text(f"{self.prompt} {self.typed}", style="bold yellow")
        line = Text(HELP, style="dim")
        if self.note:
            line.append(f"\n{self.note}", style="italic")
        return line

    def _ask(self, prompt: str, pending: Request) -> None:
        self.prompt, self.typed, self._pending = prompt, "", pending

    def _answer(self, key: str) -> Request | None:
        pending = self._pending
        assert pending is not None
        if pending.verb == "delete":
            self.prompt = self._pending = None
            return pending if key == "y" else None
        if key == ESCAPE:
            self.prompt = self._pending = None
        elif key == ENTER:
            self.prompt = self._pending = None
            return Request("clone", pending.run_id, self.typed.split(), pending.warm)
        elif key == BACKSPACE:
            self.typed = self.typed[:-1]
        elif len(key) == 1 and key.isprintable():
            self.typed += key
        return None
