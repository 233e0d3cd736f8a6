"""Where each setting came from: the config files, ``--configfile`` and ``--config``.

Snakemake merges ``config/config.yaml``, every ``--configfile`` and the ``--config``
values into one ``config``; a message about a setting should name the place the user has to
edit. :class:`ConfigSources` keeps the layers in their order and answers that question;
:func:`origin` is what messages call.

Two YAML pitfalls are handled here as well: a syntax error is reported with its file and
line before Snakemake reads the file, and ``--config`` values nested in a mapping (which
Snakemake reads as text) are given the type the schema asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ifnsig.errors import InputError

DEFAULT_CONFIG_FILE = "config/config.yaml"
COMMAND_LINE = "--config"


def check_yaml_syntax(path: str | Path) -> None:
    """Raise an InputError naming the file and line when ``path`` is not valid YAML."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = err.problem or err.context or "not valid YAML"
        raise InputError(
            f"{path}: {where}: {problem} (YAML syntax); fix the line (check indentation with "
            "spaces, not tabs, closing brackets and quotes, and 'key: value' with a space)."
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(
            f"{path}: not readable as YAML ({type(err).__name__}); save it as UTF-8 YAML text."
        ) from None


def _lookup(tree: Any, path: tuple) -> tuple[bool, Any]:
    for key in path:
        if isinstance(tree, dict) and key in tree:
            tree = tree[key]
        elif isinstance(tree, list) and isinstance(key, int) and 0 <= key < len(tree):
            tree = tree[key]
        else:
            return False, None
    return True, tree


def split_key(key: str | tuple) -> tuple:
    """``"de.contrasts[0].name"`` -> ``("de", "contrasts", 0, "name")``."""
    if isinstance(key, tuple):
        return key
    parts: list = []
    for part in key.split("."):
        name, *indices = part.replace("]", "").split("[")
        if name:
            parts.append(name)
        parts.extend(int(i) for i in indices)
    return tuple(parts)


@dataclass
class ConfigSources:
    """The layers of the configuration, lowest precedence first: ``(name, values, text)``.

    ``values`` are the parsed layer, ``text`` the same layer read with every scalar as it
    was written (YAML's base loader), to quote the user's own spelling back.
    """

    layers: list[tuple[str, dict, dict]] = field(default_factory=list)

    @classmethod
    def of_files(cls, files: list[str | Path], command_line: dict | None = None) -> ConfigSources:
        layers = []
        for file in files:
            path = Path(file)
            if not path.is_file():
                continue
            check_yaml_syntax(path)
            text = path.read_text(encoding="utf-8")
            values = yaml.safe_load(text) or {}
            written = yaml.load(text, Loader=yaml.BaseLoader) or {}
            layers.append((_display(path), values, written))
        if command_line:
            layers.append((COMMAND_LINE, dict(command_line), dict(command_line)))
        return cls(layers)

    @classmethod
    def of_workflow(cls, workflow, default_file: str = DEFAULT_CONFIG_FILE) -> ConfigSources:
        """The layers of a running Snakemake workflow (its ``workflow`` object)."""
        settings = workflow.config_settings
        # --configfile files override the workflow's configfile (Snakemake lists them first).
        command_line_files = [_display(f) for f in settings.configfiles]
        files = [f for f in workflow.configfiles if _display(f) not in command_line_files]
        files = (files or [default_file]) + command_line_files
        return cls.of_files(files, dict(settings.config or {}))

    def origin(self, key: str | tuple) -> str:
        """The file (or ``--config``) that set ``key``; the main config file for defaults."""
        path = split_key(key)
        # The deepest part of the key that a layer sets decides (a list item is set by the
        # layer that sets the list).
        for depth in range(len(path), 0, -1):
            for name, values, _ in reversed(self.layers):
                found, _ = _lookup(values, path[:depth])
                if found:
                    return name
        return self.layers[0][0] if self.layers else DEFAULT_CONFIG_FILE

    def written(self, key: str | tuple) -> str | None:
        """The value of ``key`` as the user wrote it (text), when a layer holds it."""
        path = split_key(key)
        for _, _, text in reversed(self.layers):
            found, value = _lookup(text, path)
            if found and isinstance(value, str):
                return value
        return None

    def type_command_line_values(self, config: dict, schema: dict) -> None:
        """Give ``--config`` values the type the schema asks for (in ``config``, in place).

        Snakemake types a top-level ``--config key=value`` itself but reads values nested in
        a mapping (``--config 'de={alpha: 0.05}'``) as text; a text value where the schema
        wants a number, a boolean or null is read again as YAML.
        """
        command_line = [values for name, values, _ in self.layers if name == COMMAND_LINE]
        if not command_line:
            return

        def walk(value: Any, target: Any, sub: dict, path: tuple) -> None:
            if isinstance(value, dict) and isinstance(target, dict):
                for key, item in value.items():
                    if key in target:
                        child = _child_schema(sub, key)
                        if isinstance(item, str) and not _accepts_string(child):
                            target[key] = _typed(item)
                        else:
                            walk(item, target[key], child, (*path, key))
            elif isinstance(value, list) and isinstance(target, list):
                child = sub.get("items", {}) if isinstance(sub, dict) else {}
                for i, item in enumerate(value):
                    if i < len(target):
                        if isinstance(item, str) and not _accepts_string(child):
                            target[i] = _typed(item)
                        else:
                            walk(item, target[i], child, (*path, i))

        walk(command_line[0], config, schema, ())


def _display(path: str | Path) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _child_schema(schema: dict, key: str) -> dict:
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties", {})
    if key in properties:
        return properties[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def _accepts_string(schema: dict) -> bool:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    return "string" in kinds


def _typed(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def yaml_reading(value: Any, written: str | None) -> str:
    """Why a value the user meant as a name is not text: YAML 1.1 read it as something else."""
    if isinstance(value, bool):
        return (
            f"YAML reads {written or value} as the boolean {str(value).lower()} "
            "(On, Off, Yes, No, True and False are booleans)"
        )
    if isinstance(value, int | float):
        spelled = f"{written} as the number {value!r}" if written else f"it as the number {value}"
        return f"YAML reads {spelled}"
    if value is None:
        return f"YAML reads {written or 'it'} as empty (null, ~ and an empty value are null)"
    return f"YAML reads it as a {type(value).__name__}"


# The layers of the current run, set once at parse time; messages ask :func:`origin`.
_CURRENT = ConfigSources()


def use_sources(sources: ConfigSources) -> None:
    """Make ``sources`` the ones :func:`origin` answers from (the Snakefile does this once)."""
    global _CURRENT
    _CURRENT = sources


def origin(key: str | tuple) -> str:
    """The file (or ``--config``) that set ``key`` in this run, for messages."""
    return _CURRENT.origin(key)


def written(key: str | tuple) -> str | None:
    """``key`` as the user wrote it in this run, when it was written as text."""
    return _CURRENT.written(key)
