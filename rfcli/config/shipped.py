"""The sweeps that ship in `configs/`, as `rf configs` lists them and `rf cp` copies them.

Each shipped file starts with a comment header that says, in this order:

    # <what the sweep shows, on one line>
    # <anything more: what it needs, what to look at>
    #   rf run configs/<file>                  the exact command that runs it (more may follow)
    # Wall time here: <time> (<where and under what load it was measured>)

The header is the one home of a config's description and measured cost: `rf configs` reads it, and
`tests/unit/test_shipped_configs.py` holds every file to it. Only PyYAML loads here, so listing is quick.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfcli.config.errors import did_you_mean
from rfcli.errors import NotFoundError, UserError

COMMAND = re.compile(r"^#\s{2,}(rf \w+ \S.*)$")
WALL_TIME = "# Wall time here: "
NAME_LINE = re.compile(r"^name:.*$", re.MULTILINE)
SUFFIXES = (".yaml", ".yml")


def shipped_folder() -> Path:
    """`configs/` beside the package in a checkout (or an editable install), else where a wheel
    installs it (`share/rf/configs` under the environment's prefix)."""
    beside = Path(__file__).resolve().parents[2] / "configs"
    return beside if beside.is_dir() else Path(sys.prefix) / "share" / "rf" / "configs"


@dataclass(frozen=True)
class ShippedConfig:
    path: Path
    header: list[str]
    """The leading comment lines, '#' included."""
    settings: dict[str, Any]
    """The first run's settings as the file gives them (for the trainer and the model)."""
    runs: int
    """Runs in its plan, as its search space gives them (grid axes, or `num_samples` draws)."""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def summary(self) -> str:
        return self.header[0].lstrip("# ").strip() if self.header else ""

    @property
    def commands(self) -> list[str]:
        return [match.group(1) for line in self.header if (match := COMMAND.match(line))]

    @property
    def wall_time(self) -> str | None:
        return next(
            (line.removeprefix(WALL_TIME) for line in self.header if line.startswith(WALL_TIME)), None
        )

    @property
    def trainer(self) -> str:
        return str(self.settings.get("trainer", "sft"))

    @property
    def model(self) -> str:
        model = self.settings.get("model")
        return str(model.get("name", "rf-tiny")) if isinstance(model, dict) else "rf-tiny"


def read_shipped(path: Path) -> ShippedConfig:
    import yaml

    from rfcli.config.search import grid_configs

    text = path.read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    raw = yaml.safe_load(text) or {}
    search = raw.get("search") or {}
    space = {key: value for key, value in raw.items() if key != "search"}
    concrete = grid_configs(space)
    runs = int(search.get("num_samples") or 0) if search.get("method") == "random" else len(concrete)
    return ShippedConfig(path, header, concrete[0] if concrete else {}, runs)


def shipped_configs() -> list[ShippedConfig]:
    folder = shipped_folder()
    return [read_shipped(path) for path in sorted(folder.glob("*.yaml"))] if folder.is_dir() else []


def shipped_config(name: str) -> ShippedConfig:
    """The shipped config called `name` (with or without its .yaml); the error lists them all."""
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    configs = {config.name: config for config in shipped_configs()}
    if stem not in configs:
        known = ", ".join(configs) or f"none: {shipped_folder()} holds no configs"
        raise NotFoundError(
            f"no shipped config named '{name}'{did_you_mean(stem, configs)}; they are: {known}"
        )
    return configs[stem]


def copy_destination(config: ShippedConfig, dest: Path) -> Path:
    """Where `rf cp` writes: DEST itself, DEST.yaml when it has no suffix, or DEST/<name>.yaml for a
    folder. Never over an existing file, never into a folder that does not exist."""
    if dest.is_dir():
        dest = dest / config.path.name
    elif not dest.suffix:
        dest = dest.with_suffix(".yaml")
    if dest.suffix not in SUFFIXES:
        raise UserError(f"{dest}: an experiment file is YAML; give a name ending in .yaml")
    if dest.exists():
        raise UserError(f"{dest} already exists; give a new file name (rf cp never overwrites)")
    if not dest.parent.is_dir():
        raise UserError(f"{dest.parent} is not a folder; make it first, or copy somewhere that exists")
    return dest


def copied_text(config: ShippedConfig, shown_as: str, name: str) -> str:
    """The file as shipped, its module names untouched, with two changes that make it the copy's
    own: the header's commands run the copy (`shown_as`, as the user wrote its path), and its
    experiment `name` is the copy's, so an edited copy starts an experiment of its own instead of
    meeting the shipped sweep's under the same name."""
    lines = config.path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = len(config.header)
    commands = [line.replace(f"configs/{config.path.name}", shown_as) for line in lines[:header]]
    return "".join(commands) + NAME_LINE.sub(f"name: {name}", "".join(lines[header:]), count=1)
