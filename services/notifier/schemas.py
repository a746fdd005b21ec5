"""The notifier checks every event it consumes against the published schema files (schemas/events/)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "schemas"
_FILE = re.compile(r"^(?P<type>[A-Za-z]+)\.v(?P<version>\d+)\.json$")


class SchemaViolation(Exception):
    pass


class EventSchemas:
    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.validators: dict[tuple[str, int], Draft202012Validator] = {}
        for path in sorted((root / "events").glob("*.json")):
            if match := _FILE.match(path.name):
                schema = json.loads(path.read_text())
                self.validators[(match["type"], int(match["version"]))] = Draft202012Validator(schema)
        if not self.validators:
            raise FileNotFoundError(f"no event schemas under {root / 'events'}")

    def check(self, event: Any, version: int) -> None:
        """Raise SchemaViolation, naming the field and the rule, unless `event` is a valid `type` v`version`."""
        event_type = event.get("type") if isinstance(event, dict) else None
        validator = self.validators.get((str(event_type), version))
        if validator is None:
            raise SchemaViolation(f"no schema for {event_type} v{version}")
        error = best_match(validator.iter_errors(event))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path) or "body"
            raise SchemaViolation(f"{where}: {error.message}")
