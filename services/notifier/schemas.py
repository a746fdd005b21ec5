"""The notifier checks every event it consumes against the published schema files (schemas/events/),
and every relay stall or resume against schemas/alerts/RelayStalled.v1.json.

They are read from the copy shipped inside the package, so an installed notifier finds them
wherever it runs (in a checkout, services/defaults/schemas is a symlink to schemas/)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from dealflow.config_file import packaged

_FILE = re.compile(r"^(?P<type>[A-Za-z]+)\.v(?P<version>\d+)\.json$")


class SchemaViolation(Exception):
    pass


class EventSchemas:
    def __init__(self, root: Path | None = None) -> None:
        root = root or packaged("schemas")
        self.validators: dict[tuple[str, int], Draft202012Validator] = {}
        for path in sorted((root / "events").glob("*.json")):
            if match := _FILE.match(path.name):
                schema = json.loads(path.read_text())
                self.validators[(match["type"], int(match["version"]))] = Draft202012Validator(schema)
        if not self.validators:
            raise FileNotFoundError(f"no event schemas under {root / 'events'}")
        self.relay_stall = Draft202012Validator(json.loads((root / "alerts" / "RelayStalled.v1.json").read_text()))

    @property
    def event_types(self) -> set[str]:
        return {event_type for event_type, _ in self.validators}

    def check(self, event: Any, version: int) -> None:
        """Raise SchemaViolation, naming the field and the rule, unless `event` is a valid `type` v`version`."""
        event_type = event.get("type") if isinstance(event, dict) else None
        validator = self.validators.get((str(event_type), version))
        if validator is None:
            raise SchemaViolation(f"no schema for {event_type} v{version}")
        _raise_first(validator, event)

    def check_relay_stall(self, body: Any) -> None:
        """Raise SchemaViolation unless `body` is what the relay publishes on deals.relay.stalled/resumed."""
        _raise_first(self.relay_stall, body)


def _raise_first(validator: Draft202012Validator, instance: Any) -> None:
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "body"
        raise SchemaViolation(f"{where}: {error.message}")
