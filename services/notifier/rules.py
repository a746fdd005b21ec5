"""Alert rules: which deal events alert whom, on which channel. Read from a TOML file at start-up.

    [channels.<name>]   type = "webhook" | "email" | "apprise" | "log", and its settings
    [recipients.<name>] channel = "<channel>", address = "..." ("{owner}" is the deal's owner),
                        sees_private_limits = true (only for those who may see the firm's limits)
    [[rules]]           events = [...], notify = [<recipient>...], urgency = "normal" | "urgent"
                        (events: deal event types, and RelayStalled / RelayResumed for the relay)
    [delivery]          attempts, backoff_seconds, max_backoff_seconds

Recipients are roles: the deal's owner (through `{owner}`), an ops channel, an approver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dealflow.config_file import ConfigFileError, ConfigFileNotFound, error_at, packaged, read_toml

from .schemas import EventSchemas

# Not deal events: what the relay says on deals.relay.stalled and deals.relay.resumed.
RELAY_EVENTS = ("RelayStalled", "RelayResumed")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class RulesError(ConfigFileError):
    """The rules file cannot be used; the message names the file, the line and the problem."""


class RulesNotFound(RulesError):
    """DEALFLOW_ALERT_RULES names a file that does not exist."""


def default_rules_path() -> Path:
    """The sample alert rules shipped with the package (deploy/alert-rules.toml in a checkout)."""
    return packaged("alert-rules.toml")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WebhookSpec(_Spec):
    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    # The HMAC key is a secret: it is read from this environment variable, never from the file.
    secret_env: str = "DEALFLOW_WEBHOOK_SECRET"
    timeout_seconds: Annotated[float, Field(gt=0)] = 5.0


class EmailSpec(_Spec):
    type: Literal["email"]
    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 25
    sender: str
    starttls: bool = False
    username_env: str | None = None
    password_env: str | None = None


class AppriseSpec(_Spec):
    type: Literal["apprise"]
    url: str


class LogSpec(_Spec):
    type: Literal["log"]


ChannelSpec = Annotated[WebhookSpec | EmailSpec | AppriseSpec | LogSpec, Field(discriminator="type")]


class RecipientSpec(_Spec):
    channel: Name
    address: str | None = None
    # The firm's private limits are in alerts only for recipients who may see them (as approver and
    # admin do on HTTP); everyone else reads "beyond the limit" without its number.
    sees_private_limits: bool = False


class RuleSpec(_Spec):
    name: str
    events: Annotated[list[str], Field(min_length=1)]
    notify: Annotated[list[Name], Field(min_length=1)]
    urgency: Literal["normal", "urgent"] = "normal"


class DeliverySpec(_Spec):
    attempts: Annotated[int, Field(ge=1, le=20)] = 4
    backoff_seconds: Annotated[float, Field(gt=0)] = 0.2
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 5.0


class RulesSpec(_Spec):
    channels: Annotated[dict[Name, ChannelSpec], Field(min_length=1)]
    recipients: Annotated[dict[Name, RecipientSpec], Field(min_length=1)]
    rules: Annotated[list[RuleSpec], Field(min_length=1)]
    delivery: DeliverySpec = DeliverySpec()

    def broken_references(self) -> list[tuple[tuple[int | str, ...], str]]:
        """Names that do not resolve, each with where it stands in the file."""
        broken: list[tuple[tuple[int | str, ...], str]] = []
        for name, recipient in self.recipients.items():
            if recipient.channel not in self.channels:
                problem = f"recipient {name!r} uses channel {recipient.channel!r}, which is not defined"
                broken.append((("recipients", name, "channel"), problem))
            elif isinstance(self.channels[recipient.channel], EmailSpec) and not recipient.address:
                problem = f"recipient {name!r} on email channel {recipient.channel!r} needs an address"
                broken.append((("recipients", name), problem))
        known = EventSchemas().event_types | set(RELAY_EVENTS)
        for index, rule in enumerate(self.rules):
            # A misspelt event would never alert anyone, silently.
            for event in rule.events:
                if event not in known:
                    broken.append((("rules", index, "events"), f"rule {rule.name!r} names {event!r}, which is not an event"))
            for recipient in rule.notify:
                if recipient not in self.recipients:
                    problem = f"rule {rule.name!r} notifies {recipient!r}, which is not a recipient"
                    broken.append((("rules", index, "notify"), problem))
        return broken


@dataclass(frozen=True)
class Target:
    """One alert to send for an event: to whom, on which channel, how urgently, and by which rule."""

    rule: str
    recipient: str
    channel: str
    address: str | None
    urgency: str
    sees_private_limits: bool = False


@dataclass(frozen=True)
class Rules:
    spec: RulesSpec

    @property
    def channels(self) -> dict[str, Any]:
        return dict(self.spec.channels)

    @property
    def delivery(self) -> DeliverySpec:
        return self.spec.delivery

    def targets(self, event_type: str, *, owner: str | None) -> list[Target]:
        """Every (recipient, channel) the rules name for this event, once each, the most urgent rule winning."""
        chosen: dict[str, Target] = {}
        for rule in self.spec.rules:
            if event_type not in rule.events:
                continue
            for name in rule.notify:
                recipient = self.spec.recipients[name]
                address = recipient.address.replace("{owner}", owner or "unknown") if recipient.address else None
                target = Target(rule.name, name, recipient.channel, address, rule.urgency, recipient.sees_private_limits)
                if name not in chosen or (rule.urgency == "urgent" and chosen[name].urgency != "urgent"):
                    chosen[name] = target
        return list(chosen.values())


def load_rules(path: Path | None = None) -> Rules:
    """The rules at `path`; None: the built-in sample rules."""
    path = path or default_rules_path()
    try:
        spec, raw = read_toml(path, RulesSpec, env_var="DEALFLOW_ALERT_RULES")
    except ConfigFileNotFound as e:
        raise RulesNotFound(str(e)) from None
    except ConfigFileError as e:
        raise RulesError(str(e)) from None
    for loc, problem in spec.broken_references():
        raise RulesError(str(error_at(path, raw.decode(), loc, problem)))
    return Rules(spec)
