"""Reading the Right Terms policy file: TOML in, a validated Policy out, or an error naming the line.

A malformed policy must stop the service at start-up: judging deals by a half-read
policy would raise (or miss) walk-away conditions silently.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from .domain.policy import ConcessionBalance, Policy, RightClient, Term, Worse

Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class PolicyError(Exception):
    """The policy file cannot be used; the message names the file, the line and the problem."""


class _Spec(BaseModel):
    # Strict: "45" and true are not numbers; nan and inf would make every comparison false,
    # silently switching off the walk-away conditions they judge.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _TermSpec(_Spec):
    public: float
    limit: float
    worse: Literal["higher", "lower"]
    description: str = ""
    unit: str = ""

    @model_validator(mode="after")
    def limit_is_no_better_than_public(self) -> _TermSpec:
        better = self.limit < self.public if self.worse == "higher" else self.limit > self.public
        if better:
            raise ValueError(f"limit {self.limit:g} must not be better for the firm than the public position {self.public:g}")
        return self


class _Described(_Spec):
    description: str


class _RightClientSpec(_Spec):
    min_annual_value: Annotated[float, Field(ge=0)] | None = None
    excluded_industries: list[str] = []


class _ConcessionsSpec(_Spec):
    max_imbalance: Annotated[int, Field(ge=0)] = 2
    must_win_something_after: Annotated[int, Field(ge=0)] = 3


class _PolicySpec(_Spec):
    label: str = ""
    terms: Annotated[dict[Key, _TermSpec], Field(min_length=1)]
    non_negotiables: dict[Key, _Described] = {}
    nice_to_haves: dict[Key, _Described] = {}
    right_client: _RightClientSpec = _RightClientSpec()
    concessions: _ConcessionsSpec = _ConcessionsSpec()


def load_policy(path: Path) -> Policy:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PolicyError(f"{path}: cannot read the policy: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PolicyError(f"{path}:{line}: not UTF-8 (byte {e.start}); TOML files are UTF-8") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        found = re.search(r"line (\d+)", str(e))
        # tomllib says "at end of document" instead of a line for errors on the last line.
        line = found.group(1) if found else max(1, len(text.splitlines()))
        raise PolicyError(f"{path}:{line}: not valid TOML: {e}") from None
    try:
        spec = _PolicySpec.model_validate(document)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PolicyError(f"{path}:{_line_of(text, first['loc'])}: {where}: {first['msg']}") from None
    return Policy(
        version="sha256:" + hashlib.sha256(raw).hexdigest(),
        label=spec.label,
        terms={
            name: Term(name, t.public, t.limit, Worse(t.worse), t.description, t.unit) for name, t in spec.terms.items()
        },
        non_negotiables={name: n.description for name, n in spec.non_negotiables.items()},
        nice_to_haves={name: n.description for name, n in spec.nice_to_haves.items()},
        right_client=RightClient(
            spec.right_client.min_annual_value,
            frozenset(i.casefold() for i in spec.right_client.excluded_industries),
        ),
        concessions=ConcessionBalance(spec.concessions.max_imbalance, spec.concessions.must_win_something_after),
    )


def _line_of(text: str, loc: tuple[int | str, ...]) -> int:
    """The line of the key at `loc` (or of its table, when the key is missing); 1 if neither is found.

    A light reading of TOML, enough to point at a line: tables, (dotted) keys, and
    skipping the inside of multi-line strings.
    """
    path = [str(part) for part in loc if isinstance(part, str)]
    table: list[str] = []
    best = 1
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2:
                in_multiline = None
            continue
        stripped = line.split("#", 1)[0].strip()
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
