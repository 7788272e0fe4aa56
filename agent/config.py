"""``pipewarden.yml``: one file for the agent, its pipelines, their checks and the alert rules.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "pipewarden.yml"
>>> _ = path.write_text("agent:\\n  listen: 127.0.0.1:0\\npipelines: []\\n")
>>> load_config(path).agent.listen
'127.0.0.1:0'

The file is validated whole before anything starts, and every problem is
reported at once in one :class:`~agent.errors.ConfigError`, each line naming the
file, the line and the key path, what was found and what is allowed
(``pipewarden.yml:7: pipelines[0].schedul: unknown key; did you mean 'schedule'?``).

``${NAME}`` in a value is the environment variable ``NAME`` (``${NAME:-default}``
when it may be unset; ``$$`` is a literal ``$``), so secrets never need to be
written in the file. YAML anchors and aliases are allowed, but a document that
expands beyond :data:`checks.yamlsafe.MAX_VALUES` values (an alias bomb) is refused at once.
The models are pydantic's; pydantic is imported only when a file is loaded.

The file names code to import and where alerts go, so it, the pipeline files
it names and their directories must be writable by no other user
(:mod:`agent.trust`); otherwise the error says which ``chmod`` fixes it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError
from checks.yamlsafe import YamlError, compose_yaml

if TYPE_CHECKING:
    from agent.pipeline import Pipeline

__all__ = ["Loaded", "LoadedPipeline", "listen_address", "load_config", "load_pipelines_from"]

#: Largest configuration file read.
MAX_BYTES = 4 * 2**20

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path_ = tuple[str | int, ...]


# --- reading YAML with line numbers ---------------------------------------------------------------


@dataclass
class _Reader:
    """Turns a composed YAML node tree into Python values, keeping the line of every key path."""

    file: str
    env: Mapping[str, str]
    lines: dict[Path_, int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        import yaml

        self._scalars = yaml.SafeLoader("")  # builds scalars (ints, bools, timestamps) as safe_load would

    def value(self, node: Any, path: Path_) -> Any:
        import yaml

        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.value(key_node, path)
                if key == "<<":  # merge keys: the values of the referenced mapping(s), yours win
                    merged = self.value(value_node, path)
                    for m in merged if isinstance(merged, list) else [merged]:
                        if isinstance(m, dict):
                            for k, v in m.items():
                                out.setdefault(k, v)
                    continue
                if not isinstance(key, str | int | float | bool) and key is not None:
                    self.problems.append(f"{self._where(path)}: a key must be a plain value — got {type(key).__name__}")
                    continue
                step = key if isinstance(key, str | int) else str(key)
                self.lines[(*path, step)] = key_node.start_mark.line + 1
                out[key] = self.value(value_node, (*path, step))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        scalar = self._scalars.construct_object(node, deep=True)
        if isinstance(scalar, str) and "$" in scalar:
            scalar = self._substitute(scalar, path)
        return scalar

    def _substitute(self, text: str, path: Path_) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            value = self.env.get(name)
            if value is None:
                if default is not None:
                    return default
                self.problems.append(
                    f"{self._where(path)}: environment variable {name} is not set "
                    f"(write ${{{name}:-default}} for a default)"
                )
                return ""
            return value

        return _ENV_REF.sub(one, text)

    def _where(self, path: Path_) -> str:
        return f"{self.file}:{self.line_of(path)}: {_dotted(path) or '(top)'}"

    def line_of(self, path: Path_) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _read_yaml(path: Path, env: Mapping[str, str]) -> tuple[Any, _Reader]:
    file = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        hint = (
            "; pass the file with --config (or PIPEWARDEN_CONFIG), or write one: docs/daemon.md"
            if isinstance(exc, FileNotFoundError)
            else ""
        )
        raise ConfigError(f"{file}: cannot read the configuration: {exc.strerror or exc}{hint}", path=file) from None
    if path.is_dir():
        raise ConfigError(f"{file} is a directory; pass the configuration file (pipewarden.yml)", path=file)
    if size > MAX_BYTES:
        raise ConfigError(f"{file}: {size:,} bytes is larger than a configuration can be ({MAX_BYTES:,})", path=file)
    _trusted(path, "read the configuration")  # it names code to import and where alerts go
    text = path.read_text(encoding="utf-8", errors="replace")
    try:  # the alias bound (checks.yamlsafe.MAX_VALUES) is checked before anything walks the nodes
        node = compose_yaml(text, path=file)
    except YamlError as exc:
        raise ConfigError(str(exc.problems[0]), path=file, line=exc.line) from None
    reader = _Reader(file, env)
    if node is None:
        return {}, reader
    try:
        return reader.value(node, ()), reader
    except RecursionError:
        raise ConfigError(f"{file}: the document is nested too deeply to read", path=file) from None


# --- the models --------------------------------------------------------------------------------------


def _models() -> Any:
    """The pydantic models, built on first use (``import agent.config`` stays light)."""
    global _MODELS
    if _MODELS is not None:
        return _MODELS
    from typing import Annotated, Literal

    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

    from alerts.config import AlertsConfig
    from alerts.durations import parse_duration

    Duration = Annotated[float, BeforeValidator(parse_duration)]

    class _Model(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

    class AgentSpec(_Model):
        """The ``agent:`` section."""

        home: str | None = None
        store: str | None = None
        listen: str = "127.0.0.1:9464"
        api_token_env: str = "PIPEWARDEN_API_TOKEN"
        grace_period: Duration = 30.0
        max_runs: int = Field(8, ge=1, le=256)
        executor: Literal["threads", "processes", "dask"] = "threads"
        dask_address: str | None = None
        env: dict[str, str] = Field(default_factory=dict)

        @field_validator("listen")
        @classmethod
        def _listen(cls, value: str) -> str:
            listen_address(value)
            return value

        @field_validator("store")
        @classmethod
        def _store(cls, value: str | None) -> str | None:
            from agent.store import store_url

            try:
                return store_url(value or "", {})
            except ConfigError as exc:
                raise ValueError(str(exc).replace("the store URL ", "", 1)) from None

        @field_validator("env")
        @classmethod
        def _env(cls, value: dict[str, str]) -> dict[str, str]:
            bad = [k for k in value if not k.startswith(("OTEL_", "PIPEWARDEN_"))]
            if bad:
                raise ValueError(f"only OTEL_* and PIPEWARDEN_* settings belong here — got {', '.join(bad)}")
            return value

    class FilesSpec(_Model):
        """A file trigger: a run per file that arrives in ``directory`` and matches ``pattern``."""

        directory: str
        pattern: str = "*"
        stable_seconds: Duration = 5.0
        recursive: bool = False

    class AfterSpec(_Model):
        """One upstream of ``after:``: a pipeline, and optionally a dataset (a task) of it."""

        pipeline: str = Field(min_length=1)
        dataset: str | None = Field(None, min_length=1)

    class PipelineSpec(_Model):
        """One entry of ``pipelines:``."""

        target: str = Field(min_length=1)
        name: str | None = None
        schedule: str | None = None
        timezone: str | None = None
        files: FilesSpec | None = None
        after: str | AfterSpec | list[str | AfterSpec] | None = None
        params: dict[str, Any] = Field(default_factory=dict)
        max_active_runs: int | None = Field(None, ge=1)
        catchup: int | Literal["all"] | None = None
        checks: dict[str, list[Any]] = Field(default_factory=dict)

    class Config(_Model):
        """The whole of pipewarden.yml."""

        agent: AgentSpec = Field(default_factory=lambda: AgentSpec.model_validate({}))
        pipelines: list[PipelineSpec] = Field(default_factory=list)
        alerts: AlertsConfig | None = None

    _MODELS = Config
    return Config


_MODELS: Any = None


def listen_address(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` -> ``("127.0.0.1", 9464)``; ValueError (read by the model as a problem) if it is not."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen is host:port, such as 127.0.0.1:9464 (port 0: any free port) — got {value!r}")
    return host.strip("[]"), int(port)


# --- loading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedPipeline:
    """A configured pipeline, its file loaded and the configuration's overrides applied."""

    pipeline: Pipeline
    spec: Any
    line: int


@dataclass(frozen=True)
class Loaded:
    """A validated configuration and its pipelines."""

    path: Path
    config: Any
    pipelines: dict[str, LoadedPipeline]

    @property
    def agent(self) -> Any:
        return self.config.agent


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Any:
    """Read and validate ``path`` (pipelines are not imported: see :func:`load_pipelines_from`)."""
    return _load(Path(path), os.environ if env is None else env)[0]


def _load(path: Path, env: Mapping[str, str]) -> tuple[Any, _Reader]:
    from pydantic import ValidationError

    Config = _models()
    data, reader = _read_yaml(path, env)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1: the configuration is a mapping (agent:, pipelines:, alerts:) — got {type(data).__name__}",
            path=str(path),
            line=1,
        )
    problems = list(reader.problems)
    config = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(path, reader, data, err, Config) for err in exc.errors()]
    if problems:
        raise _error(path, problems)
    return config, reader


def load_pipelines_from(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Loaded:
    """Validate ``path``, import every pipeline it names and apply its overrides; every problem at once."""
    file = Path(path)
    config, reader = _load(file, os.environ if env is None else env)
    problems: list[str] = []
    pipelines: dict[str, LoadedPipeline] = {}
    for i, spec in enumerate(config.pipelines):
        where = f"{file}:{reader.line_of(('pipelines', i))}: pipelines[{i}]"
        try:
            pipe = _own_copy(_import_target(spec.target, base=file.parent))
            _apply(pipe, spec, where, problems, reader, i, file)
        except ConfigError as exc:
            problems.append(f"{where}.target: {exc}")
            continue
        name = spec.name or pipe.name
        if spec.name and spec.name != pipe.name:
            pipe.name = spec.name
        if name in pipelines:
            problems.append(f"{where}: a second pipeline named {name!r} (pipelines[{pipelines[name].line}] has it)")
            continue
        pipelines[name] = LoadedPipeline(pipe, spec, i)
    if not problems:
        problems += _after_problems(pipelines, file, reader)
    if problems:
        raise _error(file, problems)
    return Loaded(file, config, pipelines)


def _after_problems(pipelines: Mapping[str, LoadedPipeline], file: Path, reader: _Reader) -> list[str]:
    """Pipelines that run after others: each upstream is a pipeline of this file (and a task of it), no cycle."""
    from agent.graph import find_cycle
    from agent.schedules import After

    problems: list[str] = []
    upstream: dict[str, list[str]] = {}
    for name, lp in pipelines.items():
        sched = lp.pipeline.schedule
        if not isinstance(sched, After):
            continue
        upstream[name] = [link.pipeline for link in sched.links]
        for j, link in enumerate(sched.links):
            # The line of the entry under after:, or of the pipeline when its file declares After(...).
            path: tuple[str | int, ...] = ("pipelines", lp.line, "after")
            if isinstance(lp.spec.after, list):
                path += (j,)
            where = f"{file}:{reader.line_of(path)}: {_dotted(path)}"
            if link.pipeline == name:
                problems.append(f"{where}: pipeline {name!r} cannot run after itself")
            elif link.pipeline not in pipelines:
                hint = difflib.get_close_matches(link.pipeline, list(pipelines), n=1)
                problems.append(
                    f"{where}: no pipeline {link.pipeline!r} in {file.name}"
                    + (f"; did you mean {hint[0]!r}?" if hint else f" (pipelines: {', '.join(pipelines)})")
                )
            elif link.dataset is not None and link.dataset not in pipelines[link.pipeline].pipeline.tasks:
                tasks = pipelines[link.pipeline].pipeline.tasks
                hint = difflib.get_close_matches(link.dataset, list(tasks), n=1)
                problems.append(
                    f"{where}: pipeline {link.pipeline!r} writes no dataset {link.dataset!r} (its datasets are its "
                    f"tasks: {', '.join(tasks)})" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
    if not problems:
        cycle = find_cycle(upstream)
        if cycle:
            where = f"{file}:{reader.line_of(('pipelines', pipelines[cycle[0]].line, 'after'))}"
            problems.append(
                f"{where}: pipelines run after each other in a cycle: {' -> '.join(cycle)} (each runs after the "
                "next); remove one of these links"
            )
    return problems


def _trusted(path: Path, what: str) -> None:
    """ConfigError when ``path`` or its directory could have been written by another user."""
    from agent.errors import UntrustedPathError
    from agent.trust import require_trusted

    try:
        require_trusted([path.absolute().parent, path], what=f"{what} {path}")
    except UntrustedPathError as exc:
        raise ConfigError(str(exc), path=str(path)) from None


def _own_copy(pipe: Pipeline) -> Pipeline:
    """A copy for the configuration's overrides, so the imported object stays as its file declares it.

    The loader keeps an unchanged file's module, so without it a reload would find the pipeline
    renamed (``name:``) and its configured checks added a second time, and two entries naming
    the same pipeline would share one object.
    """
    _ = pipe.version  # asks git once per loaded pipeline, here rather than in the scheduler's first tick
    out = copy.copy(pipe)
    out.tasks = dict(pipe.tasks)
    out.params = dict(pipe.params)
    out._referenced = set(pipe._referenced)
    out._graph = None
    return out


def _import_target(target: str, *, base: Path) -> Pipeline:
    """``file.py[:name]`` (relative to the configuration's directory) or ``package.module:attribute``."""
    from agent.loader import load_pipeline, split_target
    from agent.pipeline import Pipeline

    file, name = split_target(target)
    if file.suffix == ".py" or "/" in target or os.sep in target:
        full = file if file.is_absolute() else base / file
        _trusted(full, "import the pipeline file")
        return load_pipeline(f"{full}:{name}" if name else str(full))
    module, _, attribute = target.partition(":")
    if not attribute:
        raise ConfigError(f"{target!r} is neither a file (path/to/file.py[:pipeline]) nor module:attribute")
    try:
        value = getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module!r}: {exc}") from None
    except AttributeError:
        raise ConfigError(f"module {module!r} has no attribute {attribute!r}") from None
    if not isinstance(value, Pipeline):
        raise ConfigError(f"{target} is a {type(value).__name__}, not a Pipeline")
    value.graph()
    return value


def _apply(pipe: Pipeline, spec: Any, where: str, problems: list[str], reader: _Reader, i: int, file: Path) -> None:
    """The configuration's overrides: schedule, file trigger, params, limits, checks."""
    from agent.params import convert, param_types
    from agent.schedules import After, FileArrival, Link, parse_schedule

    def line(*key: str | int) -> str:
        return f"{file}:{reader.line_of(('pipelines', i, *key))}: pipelines[{i}].{_dotted(key)}"

    given = [k for k in ("schedule", "files", "after") if getattr(spec, k) is not None]
    if len(given) > 1:
        problems.append(f"{line(given[1])}: a pipeline has one schedule; give one of schedule, files or after")
    timezone = spec.timezone or pipe.timezone
    if spec.schedule is not None:
        try:
            pipe.schedule = parse_schedule(spec.schedule, timezone=timezone, where="schedule")
        except ConfigError as exc:  # the line already names the key: drop parse_schedule's "schedule: "
            problems.append(f"{line('schedule')}: {str(exc).removeprefix('schedule: ')}")
    elif spec.timezone is not None and pipe.schedule is not None and pipe.schedule.kind == "cron":
        try:
            pipe.schedule = parse_schedule(pipe.schedule.expr, timezone=timezone)  # type: ignore[attr-defined]
        except ConfigError as exc:
            problems.append(f"{line('timezone')}: {exc}")
    if spec.files is not None:
        directory = Path(spec.files.directory)
        if not directory.is_absolute():
            directory = file.parent / directory
        pipe.schedule = FileArrival(str(directory), spec.files.pattern, spec.files.stable_seconds, spec.files.recursive)
    if spec.after is not None:
        entries = spec.after if isinstance(spec.after, list) else [spec.after]
        pipe.schedule = After(*(e if isinstance(e, str) else Link(e.pipeline, e.dataset) for e in entries))
    unknown = [k for k in spec.params if k not in pipe.params and k != "path"]
    for k in unknown:
        hint = difflib.get_close_matches(k, list(pipe.params), n=1)
        declared = ", ".join(pipe.params) or "none"
        problems.append(
            f"{line('params', k)}: {pipe.name!r} declares no parameter {k!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else f" (declared: {declared})")
        )
    for k, v in spec.params.items():
        if k in unknown:
            continue
        try:  # converted to the parameter's type now, so a bad value is a problem of this file and line
            pipe.params[k] = convert(pipe, k, v, param_types(pipe)[k])[0]
        except ConfigError as exc:
            problems.append(f"{line('params', k)}: {exc}")
    if spec.max_active_runs is not None:
        pipe.max_active_runs = spec.max_active_runs
    if spec.catchup is not None:
        pipe.catchup = None if spec.catchup == "all" else spec.catchup
    if spec.checks:
        from checks import from_config
        from checks.errors import CheckConfigError

        for task, declared in spec.checks.items():
            if task not in pipe.tasks:
                hint = difflib.get_close_matches(task, list(pipe.tasks), n=1)
                problems.append(
                    f"{line('checks', task)}: {pipe.name!r} has no task {task!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
                continue
            try:
                built = from_config(declared, path=f"{file}:{reader.line_of(('pipelines', i, 'checks', task))}")
            except CheckConfigError as exc:
                problems.extend(exc.problems)
                continue
            old = pipe.tasks[task]
            pipe.tasks[task] = dataclasses.replace(old, checks=(*old.checks, *built))
        pipe._graph = None


def _problem(file: Path, reader: _Reader, data: Any, err: Mapping[str, Any], model: Any) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = _data_path(data, loc)
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        hint = difflib.get_close_matches(str(path[-1]), known, n=1) if known else []
        msg = (
            "unknown key"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + (f"; allowed: {', '.join(known)}" if known and not hint else "")
        )
    elif err["type"] == "missing":
        msg = "required"
    found = err.get("input")
    if (
        err["type"] not in ("extra_forbidden", "missing")
        and isinstance(found, str | int | float | bool)
        and "got" not in msg
    ):
        msg += f" — got {found!r}"
    return f"{file}:{reader.line_of(path)}: {_dotted(path)}: {msg}"


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """The key path in the document of a pydantic location (tags of unions left out)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(node, Mapping) and part not in node and (node.get("kind") == part or "[" in str(part)):
            continue
        if part == "for_":
            part = "for"
        out.append(part)
        node = node.get(part) if isinstance(node, Mapping) else None
    return tuple(out)


def _fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model a pydantic location reaches (for did-you-mean), or []."""
    import typing

    def members(annotation: Any) -> list[Any]:
        """The models an annotation may hold (inside lists, optionals, unions, Annotated)."""
        if hasattr(annotation, "model_fields"):
            return [annotation]
        if typing.get_origin(annotation) is dict:
            return []
        return [m for a in typing.get_args(annotation) for m in members(a)]

    current: list[Any] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        by_tag = [m for m in current if _tag(m) == part]
        if by_tag:  # the tag of a discriminated union: the member it names
            current = by_tag
            continue
        holding = [m for m in current if part in m.model_fields]
        if not holding:
            return []
        current = members(holding[0].model_fields[part].annotation)
    return list(current[0].model_fields) if len(current) == 1 else []


def _tag(model: Any) -> Any:
    import typing

    field = getattr(model, "model_fields", {}).get("kind")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 else None


def _error(file: Path, problems: list[str]) -> ConfigError:
    head = problems[0] if len(problems) == 1 else f"{len(problems)} problems in {file}:\n  " + "\n  ".join(problems)
    return ConfigError(head, path=str(file), problems=problems)
