"""The public contract, generated from the code's own types: `dealflow schemas` writes schemas/.

- schemas/events/<Type>.v<N>.json     every event as published (the body on deals.events.*)
- schemas/commands/<command>.v1.json  every command message (deals.commands.*; HTTP bodies are these
                                      without the identifiers the path carries)
- schemas/alerts/<Name>.v1.json       the notifier's webhook body and dead letters
- schemas/openapi.json                the HTTP API
- schemas/asyncapi.json               the NATS subjects, their payloads and headers (AsyncAPI 3)

Files of older event versions are history and are kept, never rewritten. A test runs
`drift()` so a change in the code cannot silently change the contract.

The files are read from the copy shipped inside the package (services/defaults/schemas, a symlink
to schemas/ in a checkout), so `--check` works from an installed package too; only a checkout is written.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, create_model

from dealflow.config_file import packaged
from dealflow.deal_lifecycle.adapters.relay_status import RESUMED_SUBJECT, STALLED_SUBJECT, RelayStalledMessage
from dealflow.nats_contract import RELAY_WAKE_SUBJECT
from dealflow.deal_lifecycle.application.access import ordered
from dealflow.deal_lifecycle.application.command_table import COMMANDS
from dealflow.deal_lifecycle.domain.attempts import SigningAttempts
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.entrypoints.nats_commands import MESSAGES
from dealflow.nats_contract import command_subject
from dealflow.notifier.messages import AlertMessage, DeadLetterMessage

SCHEMAS = packaged("schemas")
BASE_ID = "https://dealflow.example/schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Fields every stored event has that are not its business data (see views.event_view).
ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic", "actor", "correlation_id", "on_behalf_of", "deal_id"}


def event_classes() -> list[type]:
    """Every event published on deals.events.*: the Deal's, and the refused signing attempts."""
    deal_events = [
        value
        for name, value in vars(Deal).items()
        if isinstance(value, type) and issubclass(value, (Deal.Event, Deal.Created)) and name not in ("Event", "Created")
    ]
    return [*deal_events, SigningAttempts.SigningRefused]


def version_of(cls: type) -> int:
    return int(getattr(cls, "class_version", 1))


def event_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {name: (hint, ...) for name, hint in hints.items() if name not in ENVELOPE}
    data = create_model(f"{cls.__name__}Data", **fields)
    data.model_config["extra"] = "forbid"
    data_schema = TypeAdapter(data).json_schema(mode="serialization")
    data_schema.pop("title", None)
    name, version = cls.__name__, version_of(cls)
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": f"{BASE_ID}/events/{name}.v{version}.json",
        "title": f"{name} v{version}",
        "description": f"The {name} event, as published on deals.events.<deal_id>.{name}.",
        "type": "object",
        "additionalProperties": False,
        "required": ["deal_id", "version", "type", "timestamp", "actor", "correlation_id", "data"],
        "properties": {
            "deal_id": {"type": "string", "format": "uuid"},
            "version": {"type": "integer", "minimum": 1, "description": "the event's position in its stream"},
            "type": {"const": name},
            "timestamp": {"type": "string", "format": "date-time"},
            "actor": {"type": "string", "description": "who did it: the verified token's sub; 'dealflow' when the service itself decided"},
            "on_behalf_of": {
                "type": ["string", "null"],
                "maxLength": 200,
                "description": "the person a system said it acted for (X-On-Behalf-Of), as it said it; absent from events published before it existed",
            },
            "correlation_id": {"type": "string"},
            "data": data_schema,
        },
    }
    if cls is SigningAttempts.SigningRefused:
        # A refusal is read beside the deal's events: `version` is the deal version it was judged at;
        # its number in the deal's log of refused signings is `attempt` (absent from refusals published before it).
        schema["properties"]["version"] = {"type": "integer", "minimum": 1, "description": "the deal version the refusal was judged at"}
        schema["properties"]["attempt"] = {"type": "integer", "minimum": 1, "description": "its number in the deal's log of refused signings"}
    return schema


def _model_schema(model: type[BaseModel], path: str, title: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["title"] = title
    return {"$schema": DRAFT, "$id": f"{BASE_ID}/{path}", **schema}


def command_schemas() -> dict[str, dict[str, Any]]:
    return {
        f"commands/{name}.v1.json": _model_schema(message, f"commands/{name}.v1.json", f"{name} v1")
        for name, message in sorted(MESSAGES.items())
    }


def alert_schemas() -> dict[str, dict[str, Any]]:
    return {
        "alerts/Alert.v1.json": _model_schema(AlertMessage, "alerts/Alert.v1.json", "Alert v1"),
        "alerts/DeadLetter.v1.json": _model_schema(DeadLetterMessage, "alerts/DeadLetter.v1.json", "DeadLetter v1"),
        "alerts/RelayStalled.v1.json": _model_schema(RelayStalledMessage, "alerts/RelayStalled.v1.json", "RelayStalled v1"),
    }


def openapi() -> dict[str, Any]:
    from dealflow.deal_lifecycle.adapters.identity import TrustedKeys  # noqa: PLC0415
    from dealflow.deal_lifecycle.bootstrap import service_app  # noqa: PLC0415
    from dealflow.deal_lifecycle.config import Settings  # noqa: PLC0415

    # The document does not depend on which keys are trusted: trust none, and make no key on disk.
    return service_app(Settings(), keys=TrustedKeys(jwks={"keys": []})).openapi_schema.to_schema()


EVENT_HEADERS = {
    "type": "object",
    "required": ["Nats-Msg-Id", "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time"],
    "properties": {
        "Nats-Msg-Id": {"type": "string", "description": "the event's id; JetStream drops a duplicate"},
        "ce-specversion": {"const": "1.0"},
        "ce-id": {"type": "string", "description": "<originator id>:<version>"},
        "ce-source": {"const": "urn:dealflow:deal-lifecycle"},
        "ce-type": {"type": "string", "description": "dealflow.deal.<EventType>"},
        "ce-subject": {"type": "string", "description": "the deal id"},
        "ce-time": {"type": "string", "format": "date-time"},
        "ce-datacontenttype": {"const": "application/json"},
        "Dealflow-Deal-Version": {"type": "string"},
        "Dealflow-Correlation-Id": {"type": "string"},
        "Dealflow-Actor": {"type": "string"},
        "Dealflow-Schema-Version": {"type": "string", "description": "N of schemas/events/<EventType>.vN.json"},
        "Dealflow-Notification-Id": {"type": "string", "description": "position in the store's event log"},
        "Nats-Expected-Last-Sequence": {
            "type": "string",
            "description": "set by the relay: JetStream stores no message after one it refused",
        },
    },
}
COMMAND_HEADERS = {
    "type": "object",
    "required": ["Authorization"],
    "properties": {
        "Authorization": {
            "type": "string",
            "description": "Bearer <JWT>: the same token as over HTTP; without one, or one whose roles may not send the command, "
            "the reply is 401 or 403 (Nats-Service-Error-Code)",
        },
        "Idempotency-Key": {"type": "string", "maxLength": 255},
        "If-Match": {"type": "string", "description": "the deal version the command expects"},
        "X-On-Behalf-Of": {"type": "string", "maxLength": 200, "description": "the person a system acts for, recorded as on_behalf_of"},
        "X-Correlation-ID": {"type": "string"},
    },
}


def asyncapi() -> dict[str, Any]:
    events = {f"{cls.__name__}": {"$ref": f"events/{cls.__name__}.v{version_of(cls)}.json"} for cls in event_classes()}
    messages: dict[str, Any] = {
        name: {"name": name, "contentType": "application/json", "headers": EVENT_HEADERS, "payload": ref}
        for name, ref in sorted(events.items())
    }
    channels: dict[str, Any] = {
        "dealEvents": {
            "address": "deals.events.{deal_id}.{event_type}",
            "description": "Every stored deal event, in order, once (JetStream stream DEALS_EVENTS).",
            "parameters": {"deal_id": {"description": "the deal's id"}, "event_type": {"description": "the event type"}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in sorted(events)},
        },
        "deadLetters": {
            "address": "deals.alerts.dead",
            "description": "Alerts and invalid events the notifier dead-lettered (stream DEALS_ALERTS).",
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        },
    }
    messages["DeadLetter"] = {"name": "DeadLetter", "contentType": "application/json", "payload": {"$ref": "alerts/DeadLetter.v1.json"}}
    operations: dict[str, Any] = {
        "receiveDealEvents": {"action": "receive", "channel": {"$ref": "#/channels/dealEvents"}},
        "receiveDeadLetters": {"action": "receive", "channel": {"$ref": "#/channels/deadLetters"}},
    }
    # Core NATS (no stream): the relay stalled at an event it cannot publish, or resumed.
    for channel, subject, what in (
        ("relayStalled", STALLED_SUBJECT, "The relay is stalled at an event it cannot publish (again at most once a minute)."),
        ("relayResumed", RESUMED_SUBJECT, "The relay has published the event it was stalled at."),
    ):
        channels[channel] = {
            "address": subject,
            "description": what,
            "messages": {"RelayStalled": {"$ref": "#/components/messages/RelayStalled"}},
        }
        operations[f"receive{channel[0].upper()}{channel[1:]}"] = {"action": "receive", "channel": {"$ref": f"#/channels/{channel}"}}
    messages["RelayStalled"] = {"name": "RelayStalled", "contentType": "application/json", "payload": {"$ref": "alerts/RelayStalled.v1.json"}}
    channels["relayWake"] = {
        "address": RELAY_WAKE_SUBJECT,
        "description": (
            "Core NATS, no body: a deal service process stored events, so the leading relay (perhaps in another "
            "process) looks now instead of at its next poll. A hint between dealflow's own processes, not for subscribers."
        ),
        "messages": {"RelayWake": {"$ref": "#/components/messages/RelayWake"}},
    }
    messages["RelayWake"] = {"name": "RelayWake", "payload": {"type": "string", "maxLength": 0}}
    operations["sendRelayWake"] = {"action": "send", "channel": {"$ref": "#/channels/relayWake"}}
    for name in sorted(MESSAGES):
        command_message, reply_message = f"{name}Command", f"{name}Reply"
        channels[f"command_{name}"] = {
            "address": command_subject(name),
            "messages": {command_message: {"$ref": f"#/components/messages/{command_message}"}},
        }
        channels[f"reply_{name}"] = {"address": None, "messages": {reply_message: {"$ref": f"#/components/messages/{reply_message}"}}}
        messages[command_message] = {
            "name": command_message,
            "contentType": "application/json",
            "headers": COMMAND_HEADERS,
            "payload": {"$ref": f"commands/{name}.v1.json"},
        }
        messages[reply_message] = {
            "name": reply_message,
            "contentType": "application/json",
            "description": "{deal, id, replayed}; or the HTTP error body with Nats-Service-Error-Code",
            "payload": {"type": "object"},
        }
        operations[name] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/command_{name}"},
            "reply": {"channel": {"$ref": f"#/channels/reply_{name}"}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "dealflow on NATS", "version": "1.0.0", "description": "Deal lifecycle events, commands and alerts."},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def readme_command_table() -> str:
    """The README's table of commands, from the command table (a test holds the README to it)."""
    rows = [
        "| command (NATS `deals.commands.<command>`) | HTTP | body | answer | roles | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for command in COMMANDS:
        if command.body is None:
            body = "none"
        else:
            fields = command.body.model_fields
            body = "`{" + ", ".join(f'"{name}"' + ("" if field.is_required() else "?") for name, field in fields.items()) + "}`"
        answer = "201, the deal" if command.opens else f"201, the new {command.creates}'s `id` and the deal" if command.creates else "200, the deal"
        roles = ", ".join(ordered(command.roles))
        rows.append(f"| `{command.name}` | `POST {command.path}` | {body} | {answer} | {roles} | {command.summary} |")
    return "\n".join(rows) + "\n"


def generate() -> dict[str, str]:
    """Every generated file, by its path under schemas/, as text."""
    documents: dict[str, Any] = {
        f"events/{cls.__name__}.v{version_of(cls)}.json": event_schema(cls) for cls in event_classes()
    }
    documents |= command_schemas() | alert_schemas()
    documents["openapi.json"] = openapi()
    documents["asyncapi.json"] = asyncapi()
    return {path: json.dumps(document, indent=2, sort_keys=True) + "\n" for path, document in documents.items()}


def drift(root: Path = SCHEMAS) -> list[str]:
    """The files whose committed text is not what the code generates (missing ones included)."""
    return sorted(path for path, text in generate().items() if not (root / path).exists() or (root / path).read_text() != text)


def strays(root: Path = SCHEMAS) -> list[str]:
    """Schema files the code does not generate: a renamed or removed event's, a command's that is gone.
    An earlier version of a schema the code still generates stays: events stored under it are still
    published (the notifier validates each against the version its header names)."""
    generated = generate()
    newest: dict[str, int] = {}
    for path in generated:
        name, _, version = path.removesuffix(".json").rpartition(".v")
        if version.isdigit():
            newest[name] = max(newest.get(name, 0), int(version))
    found = []
    for file in sorted(root.rglob("*.json")):
        path = file.relative_to(root).as_posix()
        name, _, version = path.removesuffix(".json").rpartition(".v")
        earlier = version.isdigit() and int(version) < newest.get(name, 0)
        if path not in generated and not earlier:
            found.append(path)
    return found


class InstalledPackage(Exception):
    """The schema files are those of an installed package, not a checkout's: they are not for writing."""


def checkout_schemas() -> Path | None:
    """The checkout's schemas/ folder, or None when running from an installed package (site-packages)."""
    if not SCHEMAS.is_symlink():
        return None
    target = SCHEMAS.resolve()
    return target if (target.parent / "pyproject.toml").is_file() else None


def write(root: Path | None = None) -> list[str]:
    root = root or checkout_schemas()
    if root is None:
        raise InstalledPackage(f"{SCHEMAS} belongs to an installed package; regenerate schemas/ in a clone of the repository")
    changed = drift(root)
    for path, text in generate().items():
        if path in changed:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
    return changed
