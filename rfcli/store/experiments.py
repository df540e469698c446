"""Where experiments live: one folder each, `<experiments dir>/<name>/`, holding its `state.db`
(what else is in that folder: `layout.py`)."""

from __future__ import annotations

from pathlib import Path

from rfcli.config.errors import ConfigError, did_you_mean
from rfcli.errors import NotFoundError
from rfcli.paths import mistaken_kind
from rfcli.store.layout import STATE_DB, ExperimentLayout

DEFAULT_EXPERIMENTS_DIR = Path("rf-experiments")


MAX_NAME_BYTES = 200
"""A folder name may have 255 bytes on most filesystems; MLflow's run names add the run's own."""


def experiment_folder(experiments_dir: Path, name: str) -> Path:
    """The folder of experiment `name`; the name must be one plain folder name."""
    plain = name not in {"", ".", ".."} and not any(c in "/\\" or not c.isprintable() for c in name)
    if not plain or len(name.encode()) > MAX_NAME_BYTES:
        raise ConfigError(
            f"experiment name {name[:MAX_NAME_BYTES]!r} must be a plain folder name of at most "
            f"{MAX_NAME_BYTES} bytes (letters, digits, '-', '_'; no '/', no control characters)",
            key="name",
        )
    return Path(experiments_dir) / name


def experiment_names(search_dir: Path = DEFAULT_EXPERIMENTS_DIR) -> list[str]:
    """Names of the experiments under `search_dir` (folders holding a state store, or what only an
    experiment with one makes), sorted."""
    if not Path(search_dir).is_dir():
        return []
    return sorted(
        folder.name
        for folder in Path(search_dir).iterdir()
        if ExperimentLayout(folder).state_db.is_file() or store_expected(folder)
    )


def store_expected(folder: Path) -> bool:
    """Whether `folder` holds what an experiment makes only after its state store (checkpoints, its
    MLflow store, DPO reference log-probs): a store must be there, and is never made afresh."""
    layout = ExperimentLayout(folder)
    return any(path.exists() for path in (layout.runs, layout.mlflow_db, layout.reference_logps))


def find_experiment(name: str | None, *, search_dir: Path = DEFAULT_EXPERIMENTS_DIR) -> Path:
    """The folder of experiment `name`, or with no name the one written to most recently."""
    search_dir = Path(search_dir)
    check_experiments_dir(search_dir)
    names = experiment_names(search_dir)
    if name is not None:
        folder = experiment_folder(search_dir, name)
        if name in names:
            return folder
        if names:
            found = f"experiments there: {', '.join(names)}. Pass one of those, or run `rf run CONFIG` first"
        else:
            found = f"which {_emptiness(search_dir)}. Run `rf run CONFIG` first"
        suggestion = did_you_mean(name, names)
        raise NotFoundError(
            f"no experiment named '{name}'{suggestion}; looked in {_where(search_dir)}, {found}"
        )
    if not names:
        raise NotFoundError(
            "no experiment found: run `rf run CONFIG` first, or pass the experiment name; "
            f"looked in {_where(search_dir)}, which {_emptiness(search_dir)}"
        )
    return max((search_dir / found for found in names), key=lambda folder: (_last_write(folder), folder.name))


def check_experiments_dir(search_dir: Path) -> None:
    """A folder of experiments given (`--dir`) that is something else is named as what it is."""
    mistaken = mistaken_kind(search_dir, "a folder")
    if mistaken is not None:
        raise NotFoundError(
            f"--dir {_where(search_dir)} {mistaken}; pass the folder that holds the experiments "
            "(rf-experiments by default, or experiments_dir of the experiment file)"
        )


def _last_write(folder: Path) -> float:
    """When the store was last written: in WAL mode writes land in `state.db-wal` first."""
    times = []
    state_db = ExperimentLayout(folder).state_db
    for path in (state_db, state_db.with_name(f"{STATE_DB}-wal")):
        try:
            times.append(path.stat().st_mtime)
        except OSError:  # no WAL file yet, or removed by a checkpoint just now
            pass
    return max(times, default=0.0)


def _where(search_dir: Path) -> str:
    return str(search_dir) if search_dir.is_absolute() else f"{search_dir} ({search_dir.absolute()})"


def _emptiness(search_dir: Path) -> str:
    return "holds no experiments" if search_dir.is_dir() else "does not exist"
