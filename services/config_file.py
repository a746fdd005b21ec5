"""Reading a TOML configuration file into a validated model, or an error naming the file, line and problem.

Shared by the deal service (the Right Terms policy) and the notifier (the alert rules):
a malformed file must stop a service at start-up, saying exactly where.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class ConfigFileError(Exception):
    """The file cannot be used; the message is `path:line: where: problem`."""


class ConfigFileNotFound(ConfigFileError):
    """A configured file does not exist: a wrong path, not a malformed file."""


def packaged(name: str) -> Path:
    """A file shipped inside the package (services/defaults/), used when no path is configured.

    In a checkout these are symlinks to deploy/ and schemas/, so there is one copy of each;
    a wheel holds the files themselves. pip installs unzipped, so this is a real path.
    """
    return Path(str(resources.files("dealflow") / "defaults" / name))


def read_toml(path: Path, model: type[Model], *, env_var: str) -> tuple[Model, bytes]:
    """The validated model and the file's raw bytes (for hashing).

    `env_var` is the setting that names the file, so a missing file says how to point at another.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigFileNotFound(
            f"not found: {path.absolute()} (set {env_var} to an existing file, or unset it to use the built-in default)"
        ) from None
    except OSError as e:
        raise ConfigFileError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigFileError(f"{path}:{line}: not UTF-8 (byte {e.start}); TOML files are UTF-8") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        found = re.search(r"line (\d+)", str(e))
        # tomllib says "at end of document" instead of a line for errors on the last line.
        line = found.group(1) if found else max(1, len(text.splitlines()))
        raise ConfigFileError(f"{path}:{line}: not valid TOML: {e}") from None
    try:
        return model.model_validate(document), raw
    except ValidationError as e:
        first = e.errors()[0]
        raise error_at(path, text, document_path(document, first["loc"]), first["msg"]) from None


def error_at(path: Path, text: str, loc: tuple[int | str, ...], problem: str) -> ConfigFileError:
    where = ".".join(str(part) for part in loc)
    return ConfigFileError(f"{path}:{line_of(text, loc)}: {where + ': ' if where else ''}{problem}")


def document_path(document: object, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The part of a validation error's location that exists in the file (drops union tags)."""
    found: list[int | str] = []
    node = document
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif index < len(loc) - 1:
            continue  # a union's tag, not a key of the file
        found.append(part)  # the last part may be a missing key: name it all the same
    return tuple(found)


def line_of(text: str, loc: tuple[int | str, ...]) -> int:
    """The line of the key at `loc` (or of its table, when the key is missing); 1 if neither is found.

    A light reading of TOML, enough to point at a line: tables, arrays of tables, (dotted)
    keys, and skipping the inside of multi-line strings.
    """
    path = [str(part) for part in loc]
    table: list[str] = []
    counts: dict[tuple[str, ...], int] = {}
    best = 1
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2:
                in_multiline = None
            continue
        stripped = line.split("#", 1)[0].strip()
        if header := re.fullmatch(r"\[\[([^\[\]]+)\]\]", stripped):
            name = tuple(part.strip().strip('"') for part in header.group(1).split("."))
            index = counts.get(name, 0)
            counts[name] = index + 1
            table = [*name, str(index)]
            if table == path[: len(table)]:
                best = number
            continue
        if header := re.fullmatch(r"\[([^\[\]]+)\]", stripped):
            table = [part.strip().strip('"') for part in header.group(1).split(".")]
            if table == path[: len(table)] and len(table) <= len(path):
                best = number
            continue
        if key := re.match(r'([A-Za-z0-9_\-."]+?)\s*=', stripped):
            keys = [*table, *(part.strip('"') for part in key.group(1).split("."))]
            if keys == path[: len(keys)]:
                best = number
            for quote in ('"""', "'''"):
                if stripped.count(quote) % 2:
                    in_multiline = quote
    return best
