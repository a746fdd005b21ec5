"""The notifier's messages to the outside: an alert (a webhook's body) and a dead letter. Public contracts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class AlertMessage(BaseModel):
    """What a webhook receives for one alert (schemas/alerts/Alert.v1.json)."""

    model_config = ConfigDict(extra="forbid", title="Alert")

    alert_id: str
    event_id: str
    deal_id: str
    event_type: str
    recipient: str
    urgency: Literal["normal", "urgent"]
    title: str
    text: str
    event: dict[str, Any]


class DeadLetterMessage(BaseModel):
    """What `deals.alerts.dead` carries (schemas/alerts/DeadLetter.v1.json): an alert given up on, or an invalid event."""

    model_config = ConfigDict(extra="forbid", title="DeadLetter")

    kind: Literal["alert", "message"]
    error: str
    attempts: int | None = None
    alert: AlertMessage | None = None
    subject: str | None = None
    data: str | None = None
