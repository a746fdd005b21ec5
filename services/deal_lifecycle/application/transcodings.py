"""JSON transcodings for the values the Deal keeps in its state (needed by snapshots)."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from dealflow.deal_lifecycle.domain.model import (
    Concession,
    Escalation,
    Expectation,
    Impasse,
    MissedDeadline,
    NegotiatedTerm,
    Participant,
    SalesPromise,
    WalkAwayCondition,
)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class DataclassAsDict(Transcoding):
    def __init__(self, cls: type) -> None:
        self.type = cls
        self.name = cls.__name__

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f.name: getattr(obj, f.name) for f in fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


def register(transcoder: JSONTranscoder) -> None:
    transcoder.register(DateAsISO())
    for cls in (Participant, SalesPromise, Expectation, WalkAwayCondition, Concession, NegotiatedTerm, Impasse, Escalation, MissedDeadline):
        transcoder.register(DataclassAsDict(cls))
