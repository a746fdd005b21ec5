"""How an alert travels: a signed webhook, email over SMTP, chat through Apprise, or the log.

Each channel raises on failure; retries, back-off and dead-lettering are the notifier's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import smtplib
import time
from email.message import EmailMessage
from typing import Any, Protocol

import apprise
import httpx
import structlog

from .alerts import Alert
from .rules import AppriseSpec, EmailSpec, LogSpec, WebhookSpec

log = structlog.get_logger("dealflow.alerts")

SIGNATURE = "Dealflow-Signature"
TIMESTAMP = "Dealflow-Timestamp"
ALERT_ID = "Dealflow-Alert-Id"


class DeliveryFailed(Exception):
    pass


class Channel(Protocol):
    async def send(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of "<timestamp>.<body>": the receiver recomputes it to trust the alert and its age."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookChannel:
    def __init__(self, spec: WebhookSpec) -> None:
        self.url = spec.url
        self.secret = os.environ.get(spec.secret_env, "")
        if not self.secret:
            log.warning("webhook secret not set: alerts are signed with an empty key", env=spec.secret_env)
        self.client = httpx.AsyncClient(timeout=spec.timeout_seconds)

    async def send(self, alert: Alert) -> None:
        body = json.dumps(alert.payload(), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            # The receiver deduplicates on this id: the same alert always carries the same one.
            "Idempotency-Key": alert.id,
            ALERT_ID: alert.id,
            TIMESTAMP: timestamp,
            SIGNATURE: sign(self.secret, timestamp, body),
        }
        try:
            response = await self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from None
        if response.status_code >= 300:
            raise DeliveryFailed(f"webhook answered {response.status_code}: {response.text[:200]}")

    async def close(self) -> None:
        await self.client.aclose()


class EmailChannel:
    def __init__(self, spec: EmailSpec) -> None:
        self.spec = spec

    async def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["From"] = self.spec.sender
        message["To"] = alert.address or ""
        message["Subject"] = alert.title
        # A stable Message-ID lets mail systems drop a resend of the same alert.
        message["Message-ID"] = f"<{hashlib.sha256(alert.id.encode()).hexdigest()}@dealflow>"
        message["X-Dealflow-Alert-Id"] = alert.id
        if alert.urgency == "urgent":
            message["Importance"] = "high"
        message.set_content(alert.text)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from None

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.spec.host, self.spec.port, timeout=10) as smtp:
            if self.spec.starttls:
                smtp.starttls()
            if self.spec.username_env and self.spec.password_env:
                smtp.login(os.environ.get(self.spec.username_env, ""), os.environ.get(self.spec.password_env, ""))
            smtp.send_message(message)

    async def close(self) -> None:
        return None


class AppriseChannel:
    def __init__(self, spec: AppriseSpec) -> None:
        self.notifier = apprise.Apprise()
        if not self.notifier.add(spec.url):
            raise ValueError(f"not an Apprise URL Apprise can use: {spec.url}")

    async def send(self, alert: Alert) -> None:
        notify_type = apprise.NotifyType.FAILURE if alert.urgency == "urgent" else apprise.NotifyType.INFO
        # The alert is plain text: declared so, Apprise escapes it for services that read Markdown or
        # HTML, so a caller's `[text](link)` or `<a href>` in a title or reason is shown, not followed.
        # Apprise answers only True or False and logs why it failed: catch that log, so the failure
        # names its cause (a refused connection, a 4xx/5xx answer) as the webhook and email channels do.
        with apprise.LogCapture(level=logging.DEBUG, fmt="%(levelname)s %(message)s") as captured:
            delivered = await self.notifier.async_notify(
                body=alert.text, title=alert.title, notify_type=notify_type, body_format=apprise.NotifyFormat.TEXT
            )
        if not delivered:
            cause = "; ".join(_apprise_causes(captured.getvalue()))
            raise DeliveryFailed(f"the chat service did not accept the message: {cause[-500:] or 'Apprise gave no reason'}")

    async def close(self) -> None:
        return None


def _apprise_causes(log: str) -> list[str]:
    """Apprise's warnings, and the exception it logs only at debug level (the connection error itself);
    not its other debug lines, which repeat the whole payload."""
    causes = []
    for line in log.splitlines():
        level, _, message = line.strip().partition(" ")
        if level in ("WARNING", "ERROR", "CRITICAL") or (level == "DEBUG" and "Exception:" in message):
            causes.append(message)
    return causes


class LogChannel:
    async def send(self, alert: Alert) -> None:
        log.info("alert", alert_id=alert.id, deal_id=alert.deal_id, urgency=alert.urgency, title=alert.title, text=alert.text)

    async def close(self) -> None:
        return None


def build_channels(specs: dict[str, Any]) -> dict[str, Channel]:
    builders: dict[type, Any] = {
        WebhookSpec: WebhookChannel,
        EmailSpec: EmailChannel,
        AppriseSpec: AppriseChannel,
        LogSpec: lambda _spec: LogChannel(),
    }
    return {name: builders[type(spec)](spec) for name, spec in specs.items()}
