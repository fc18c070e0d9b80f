"""Task specifications and the task registry.

A task is one declarative TOML file in ``tasks/``: cohort source, endpoint,
time unit, modalities, split sets (each pinned by sha256), metrics, horizons
and time grid. :func:`find_tasks` lists them; :func:`load_task` parses one.
The format is documented in ``tasks/README.md``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import TaskError

KINDS = ("clinical", "rna", "cnv", "mut", "wsi")
SOURCES = ("tcga", "survset", "sksurv", "csv")
CSV_FIELDS = ("id_column", "time_column", "event_column", "censorship_column")
"""Fields of a ``csv`` task naming the columns of the user's file (see tasks/README.md)."""


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: ``columns`` (exact names) and/or ``pattern`` (regex), of a ``kind``.

    ``categorical`` lists columns that are one-hot encoded at load time (the
    category list comes from the data, never from labels).
    """

    name: str
    kind: str
    columns: tuple[str, ...] = ()
    pattern: str | None = None
    categorical: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class SplitSpec:
    """A split set: mmbench's own file (``file``) or a published family in the data root (``path``)."""

    name: str
    sha256: str
    file: str | None = None
    path: str | None = None
    val_is_test: bool = False
    description: str = ""
    min_events_note: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task file; see ``tasks/README.md`` for every field."""

    name: str
    description: str
    source: str
    dataset: str
    licence: str
    citation: str
    endpoint: str
    time_unit: str
    modalities: dict[str, ModalitySpec]
    splits: dict[str, SplitSpec]
    metrics: tuple[str, ...]
    horizons: np.ndarray
    time_grid: np.ndarray
    path: Path
    needs_data_root: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> dict[str, str]:
        """Modality name -> kind."""
        return {m.name: m.kind for m in self.modalities.values()}


def tasks_dir() -> Path:
    """The built-in task folder, ``<repo>/tasks``."""
    return Path(__file__).resolve().parents[1] / "tasks"


def task_dirs() -> list[Path]:
    """Every folder searched for task files: ``<repo>/tasks``, then each folder of ``$MMBENCH_TASKS``.

    ``$MMBENCH_TASKS`` holds one or more folders separated by ``os.pathsep``
    (``:`` on Linux); they add to the built-in tasks, never replace them. A
    name found in several folders resolves to the first (built-in first).

    Raises
    ------
    TaskError
        A folder named in ``$MMBENCH_TASKS`` does not exist (a typo would
        otherwise hide the user's tasks without a word).
    """
    extra = [Path(p).expanduser() for p in os.environ.get("MMBENCH_TASKS", "").split(os.pathsep) if p]
    absent = [p for p in extra if not p.is_dir()]
    if absent:
        raise TaskError(f"$MMBENCH_TASKS names '{absent[0]}', which is not a folder (task folders are separated by "
                        f"'{os.pathsep}')")
    return [tasks_dir(), *[p for p in extra if p.resolve() != tasks_dir().resolve()]]


def find_tasks(folder: Path | None = None) -> list[str]:
    """Names of every task file (``*.toml``) in ``folder``, or in every folder of :func:`task_dirs`; sorted."""
    folders = [folder] if folder else task_dirs()
    return sorted({p.stem for f in folders for p in Path(f).glob("*.toml")})


def load_task(name: str, folder: Path | None = None) -> TaskSpec:
    """Parse ``<folder>/<name>.toml`` (default: the first of :func:`task_dirs` that has it).

    Raises
    ------
    TaskError
        Unknown task (the message lists close names), invalid TOML, or a
        missing or malformed field (named in the message).
    """
    folders = [folder] if folder else task_dirs()
    path = next((Path(f) / f"{name}.toml" for f in folders if (Path(f) / f"{name}.toml").is_file()), None)
    if path is None:
        import difflib

        known = find_tasks(folder)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        close = list(dict.fromkeys(close + [t for t in known if name.split("-")[0] in t]))[:6] or known[:6]
        where = ", ".join(str(f) for f in folders)
        raise TaskError(f"unknown task '{name}' (no {name}.toml in {where}); did you mean {', '.join(close)}? "
                        "— `mmbench tasks` lists all")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: invalid TOML ({exc})") from None
    return parse_task(raw, path)


def parse_task(raw: dict[str, Any], path: Path) -> TaskSpec:
    """Build a :class:`TaskSpec` from parsed TOML, checking every required field."""

    def need(table: dict, key: str, where: str = ""):
        if key not in table:
            raise TaskError(f"{path}: field '{where}{key}' is missing")
        return table[key]

    source = need(raw, "source")
    if source not in SOURCES:
        raise TaskError(f"{path}: field 'source' must be one of {', '.join(SOURCES)}, got '{source}'")
    modalities = {}
    for name, table in need(raw, "modalities").items():
        kind = need(table, "kind", f"modalities.{name}.")
        if kind not in KINDS:
            raise TaskError(f"{path}: field 'modalities.{name}.kind' must be one of {', '.join(KINDS)}, got '{kind}'")
        if kind != "wsi" and not table.get("columns") and not table.get("pattern") and not table.get("prefix"):
            raise TaskError(f"{path}: modality '{name}' needs 'columns', 'prefix' or 'pattern'")
        pattern = table.get("pattern")
        if table.get("prefix"):
            import re

            prefix = f"^{re.escape(str(table['prefix']))}"
            pattern = f"(?:{pattern})|{prefix}" if pattern else prefix
        modalities[name] = ModalitySpec(
            name=name,
            kind=kind,
            columns=tuple(table.get("columns", ())),
            pattern=pattern,
            categorical=tuple(table.get("categorical", ())),
            description=table.get("description", ""),
        )
    splits = {}
    for name, table in need(raw, "splits").items():
        if not table.get("file") and not table.get("path"):
            raise TaskError(f"{path}: split set '{name}' needs 'file' or 'path'")
        splits[name] = SplitSpec(
            name=name,
            sha256=need(table, "sha256", f"splits.{name}."),
            file=table.get("file"),
            path=table.get("path"),
            val_is_test=bool(table.get("val_is_test", False)),
            description=table.get("description", ""),
            min_events_note=table.get("min_events_note", ""),
        )
    grid = need(raw, "time_grid")
    try:
        time_grid = np.linspace(float(grid["start"]), float(grid["stop"]), int(grid["num"]))
    except (KeyError, TypeError, ValueError):
        raise TaskError(f"{path}: field 'time_grid' must be a table with start, stop and num") from None
    horizons = np.asarray(need(raw, "horizons"), dtype=np.float64)
    if horizons.ndim != 1 or len(horizons) == 0 or (horizons <= 0).any():
        raise TaskError(f"{path}: field 'horizons' must be a non-empty list of positive times")
    known = {"name", "description", "source", "dataset", "licence", "citation", "endpoint", "time_unit",
             "modalities", "splits", "metrics", "horizons", "time_grid"}
    if source == "csv":
        for key in ("id_column", "time_column"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise TaskError(f"{path}: a csv task needs field '{key}' (the column of your file that holds it)")
        if bool(raw.get("event_column")) == bool(raw.get("censorship_column")):
            raise TaskError(f"{path}: a csv task needs exactly one of 'event_column' (1 = event observed) or "
                            "'censorship_column' (1 = censored)")
    return TaskSpec(
        name=need(raw, "name"),
        description=need(raw, "description"),
        source=source,
        dataset=need(raw, "dataset"),
        licence=need(raw, "licence"),
        citation=raw.get("citation", ""),
        endpoint=need(raw, "endpoint"),
        time_unit=need(raw, "time_unit"),
        modalities=modalities,
        splits=splits,
        metrics=tuple(need(raw, "metrics")),
        horizons=horizons,
        time_grid=time_grid,
        path=path,
        needs_data_root=source == "tcga",
        extra={k: v for k, v in raw.items() if k not in known},
    )


def pin_split_hash(path: Path, split_name: str, digest: str) -> None:
    """Set ``sha256`` of table ``[splits.<split_name>]`` in a task file (maintainer tool), atomically."""
    import re

    from benchmark.store import atomic_write_text

    text = path.read_text()
    pattern = re.compile(rf"(\[splits\.{re.escape(split_name)}\][^\[]*?sha256 = )\"[0-9a-f]*\"", re.S)
    new, count = pattern.subn(rf'\g<1>"{digest}"', text)
    if count != 1:
        raise TaskError(f"{path}: cannot find the sha256 line of [splits.{split_name}]")
    atomic_write_text(path, new)
