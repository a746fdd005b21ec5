"""Reading the Right Terms policy file: TOML in, a validated Policy out, or an error naming the line.

A malformed policy must stop the service at start-up: judging deals by a half-read
policy would raise (or miss) walk-away conditions silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from dealflow.config_file import ConfigFileError, ConfigFileNotFound, packaged, read_toml
from dealflow.deal_lifecycle.domain.policy import ConcessionBalance, Deadlines, Policy, RightClient, Term, Worse
from dealflow.durations import parse_duration

Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class PolicyError(ConfigFileError):
    """The policy file cannot be used; the message names the file, the line and the problem."""


class PolicyNotFound(PolicyError):
    """DEALFLOW_POLICY names a file that does not exist."""


def default_policy_path() -> Path:
    """The Right Terms policy shipped with the package (deploy/policy.toml in a checkout)."""
    return packaged("policy.toml")


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
    # The values the term can take at all; a proposal or agreement outside them is refused.
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def limit_is_no_better_than_public(self) -> _TermSpec:
        better = self.limit < self.public if self.worse == "higher" else self.limit > self.public
        if better:
            raise ValueError(f"limit {self.limit:g} must not be better for the firm than the public position {self.public:g}")
        return self

    @model_validator(mode="after")
    def positions_are_in_range(self) -> _TermSpec:
        low = -float("inf") if self.min is None else self.min
        high = float("inf") if self.max is None else self.max
        if low > high:
            raise ValueError(f"min {low:g} must not be above max {high:g}")
        for name, value in (("public", self.public), ("limit", self.limit)):
            if not low <= value <= high:
                raise ValueError(f"{name} {value:g} must be within min and max")
        return self


class _Described(_Spec):
    description: str


class _RightClientSpec(_Spec):
    min_annual_value: Annotated[float, Field(ge=0)] | None = None
    excluded_industries: list[str] = []


class _ConcessionsSpec(_Spec):
    max_imbalance: Annotated[int, Field(ge=0)] = 2
    must_win_something_after: Annotated[int, Field(ge=0)] = 3


# A duration as people write it (`14d`, `36h`, `90m`, `2s`); anything else names the line and the rule.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _DeadlinesSpec(_Spec):
    transition_meeting_within: Duration | None = None
    contract_within: Duration | None = None
    stalled_after: Duration | None = None
    expectation_reminder: Duration | None = None


class _PolicySpec(_Spec):
    label: str = ""
    terms: Annotated[dict[Key, _TermSpec], Field(min_length=1)]
    non_negotiables: dict[Key, _Described] = {}
    nice_to_haves: dict[Key, _Described] = {}
    right_client: _RightClientSpec = _RightClientSpec()
    concessions: _ConcessionsSpec = _ConcessionsSpec()
    deadlines: _DeadlinesSpec = _DeadlinesSpec()


def load_policy(path: Path | None = None) -> Policy:
    """The policy at `path`; None: the built-in default."""
    try:
        spec, raw = read_toml(path or default_policy_path(), _PolicySpec, env_var="DEALFLOW_POLICY")
    except ConfigFileNotFound as e:
        raise PolicyNotFound(str(e)) from None
    except ConfigFileError as e:
        raise PolicyError(str(e)) from None
    return Policy(
        version="sha256:" + hashlib.sha256(raw).hexdigest(),
        label=spec.label,
        terms={
            name: Term(name, t.public, t.limit, Worse(t.worse), t.description, t.unit, t.min, t.max)
            for name, t in spec.terms.items()
        },
        non_negotiables={name: n.description for name, n in spec.non_negotiables.items()},
        nice_to_haves={name: n.description for name, n in spec.nice_to_haves.items()},
        right_client=RightClient(
            spec.right_client.min_annual_value,
            frozenset(i.casefold() for i in spec.right_client.excluded_industries),
        ),
        concessions=ConcessionBalance(spec.concessions.max_imbalance, spec.concessions.must_win_something_after),
        deadlines=Deadlines(**dict(spec.deadlines)),
    )
