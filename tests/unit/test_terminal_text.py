"""Values callers wrote are shown as text: never as markup, terminal escapes, extra lines or reordered text."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from apprise import NotifyFormat
from apprise.decorators import notify as apprise_notify
from rich.console import Console

from dealflow.deal_lifecycle.entrypoints.cli.watch import line
from dealflow.notifier.alerts import DealContext, compose
from dealflow.notifier.channels import AppriseChannel
from dealflow.notifier.rules import AppriseSpec, Target
from dealflow.terminal import printable, rich_text

# What an attacker would put in a title, an actor or a reason.
HOSTILE = {
    "markup": "[/bold][link=https://evil.example]click[/link][red]",
    "ansi": "\x1b[31mred\x1b[8mhidden\x1b[0m",
    "osc8 hyperlink": "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "osc title": "\x1b]0;pwned\x07",
    "c1 csi": "\x9b31mred",
    "newline": "ok\n2026-11-23T09:00:00Z  00000000  v1    ContractSigned               by ceo",
    "carriage return": "benign\rforged",
    "bidi override": "invoice\u202egnp.exe",
    "line separator": "one\u2028two",
}
# None of these may reach a terminal, a mail reader or a log line from a caller's value.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_printable_leaves_one_line_of_visible_text(value: str) -> None:
    shown = printable(value)
    assert RAW.search(shown) is None
    assert "\n" not in shown and "\t" not in shown


def test_printable_names_what_it_escaped_and_leaves_ordinary_text_alone() -> None:
    assert printable("a\nb\rc\td\x1b[0m\u202e") == "a\\nb\\rc\\td\\x1b[0m\\u202e"
    for ordinary in ("Acme Ltd", "Zoë Müller-Łukasik", "東京の給与計算", "payment_terms_days=90, limit=60", "50% [draft]"):
        assert printable(ordinary) == ordinary


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_rich_shows_the_value_literally(value: str) -> None:
    out = io.StringIO()
    # A colour terminal: the case where interpreted markup or escapes would do harm.
    Console(file=out, force_terminal=True, color_system="truecolor", width=400).print(rich_text(value))
    text = out.getvalue()
    assert printable(value) in text  # the markup shown as written, not interpreted
    assert "\x1b]8;" not in text  # no hyperlink planted
    assert RAW.sub("", text.replace("\x1b[0m", "").replace("\n", "")) == printable(value).replace("\n", "")


def hostile_event(value: str) -> dict[str, object]:
    return {
        "deal_id": "5f0c2b1e-0000-0000-0000-000000000000",
        "version": 3,
        "type": "WalkedAway",
        "timestamp": "2026-11-23T09:00:01.123456+00:00",
        "actor": value,
        "correlation_id": "c",
        "data": {"reason": value, "cited_conditions": [value]},
    }


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_watch_line_stays_one_line_whatever_the_event_holds(value: str) -> None:
    shown = line(hostile_event(value))
    assert RAW.search(shown) is None
    assert "\n" not in shown
    assert shown.startswith("2026-11-23T09:00:01Z  5f0c2b1e  v3    WalkedAway")
    assert f"by {printable(value)}" in shown


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_alert_text_keeps_its_own_lines_and_shows_the_callers_values_as_text(value: str) -> None:
    deal = DealContext("5f0c2b1e", title=value, client_name=value, owner=value)
    target = Target(rule="deal events", recipient="owner", channel="mail", address="ann@firm.example", urgency="urgent")
    benign = compose(hostile_event("someone"), "5f0c2b1e:3", DealContext("5f0c2b1e", "t", "c", "o"), target)
    alert = compose(hostile_event(value), "5f0c2b1e:3", deal, target)
    for text in (alert.title, alert.text):
        assert RAW.search(text) is None
    assert "\n" not in alert.title
    # The same lines as an alert on harmless values: a newline in a value forges none.
    assert len(alert.text.splitlines()) == len(benign.text.splitlines())
    assert f"Reason: {printable(value)}" in alert.text


# Chat services read Markdown or HTML: the alert is plain text, so Apprise must escape it for each.
_chat_received: dict[str, tuple[str, str]] = {}


@apprise_notify(on="dealflowmarkdown", body_format=NotifyFormat.MARKDOWN)
def _markdown_chat(body: str, title: str, *_: object, **__: object) -> bool:
    _chat_received["markdown"] = (title, body)
    return True


@apprise_notify(on="dealflowhtml", body_format=NotifyFormat.HTML)
def _html_chat(body: str, title: str, *_: object, **__: object) -> bool:
    _chat_received["html"] = (title, body)
    return True


@pytest.mark.parametrize(
    ("scheme", "planted"),
    [("markdown", ["[click](https://evil.example)", "**now**"]), ("html", ['<a href="https://evil.example">', "</a>"])],
)
def test_chat_alerts_show_the_callers_markup_as_text(scheme: str, planted: list[str]) -> None:
    value = '[click](https://evil.example) <a href="https://evil.example">click</a> **now**'
    target = Target(rule="deal events", recipient="ops", channel="chat", address=None, urgency="normal")
    alert = compose(hostile_event(value), "5f0c2b1e:3", DealContext("5f0c2b1e", value, "Acme", "ann"), target)
    channel = AppriseChannel(AppriseSpec(type="apprise", url=f"dealflow{scheme}://"))
    asyncio.run(channel.send(alert))
    title, body = _chat_received[scheme]
    for markup in planted:
        assert markup not in body
    assert "evil" in body  # shown, escaped, not dropped
