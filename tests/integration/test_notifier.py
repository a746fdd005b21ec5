"""The notifier as its own process on a real nats-server: alerts on the right channels, no duplicate
after a crash, retries then dead letters, two notifiers sharing the work, invalid messages, `dealflow up`.

The deal service runs in-process (TestClient with messaging, so its relay publishes to JetStream);
the notifier is `python -m services notifier`; webhooks and Apprise post to a real HTTP server,
email goes to a real SMTP server (aiosmtpd). SQLite only: the notifier does not touch the deal store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats, free_port
from tests.notifier_support import (
    relayed_client,
    DEALFLOW,
    ROOT,
    SECRET,
    Notifiers,
    Receiver,
    SmtpSink,
    clean_env,
    consumer_idle,
    dealflow,
    notifier_env,
    publish,
    query,
    signature_is_valid,
    statuses,
    stream_messages,
    wait_until,
    write_rules,
)
from tests.support import bearer

DEAD_SUBJECT = "deals.alerts.dead"


@pytest.fixture
def client(tmp_path: Path, nats_server: EmbeddedNats) -> Iterator[TestClient]:
    with relayed_client(tmp_path, nats_server.url) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as http_receiver:
        yield http_receiver


@pytest.fixture
def notifiers(tmp_path: Path) -> Iterator[Notifiers]:
    with Notifiers(tmp_path) as started:
        yield started


def open_deal(client: TestClient, title: str = "Acme payroll", owner: str = "ann", actor: str = "ann@firm") -> str:
    response = client.post("/deals", json={"title": title, "client_name": "Acme Ltd", "owner": owner}, headers=bearer(sub=actor))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def sign_letter_of_intent(client: TestClient, deal_id: str, actor: str = "bob@firm") -> None:
    response = client.post(f"/deals/{deal_id}/letter-of-intent", headers=bearer(sub=actor))
    assert response.status_code == 200, response.text


def event_version(client: TestClient, deal_id: str, event_type: str) -> int:
    [version] = [e["version"] for e in client.get(f"/deals/{deal_id}/events").json()["events"] if e["type"] == event_type]
    return int(version)


def dead_letters_on_jetstream(url: str) -> list[dict[str, object]]:
    return [json.loads(body) for subject, _, body in stream_messages(url, "DEALS_ALERTS") if subject == DEAD_SUBJECT]


def webhook_rules(path: Path, receiver: Receiver, recipients: dict[str, str], events: list[str], *, timeout: float = 5) -> Path:
    """One webhook channel per recipient (recipient name -> receiver path), one rule for `events`."""
    text = ""
    for name, url_path in recipients.items():
        text += f'[channels.hook_{name}]\ntype = "webhook"\nurl = "{receiver.url(url_path)}"\ntimeout_seconds = {timeout}\n\n'
        text += f'[recipients.{name}]\nchannel = "hook_{name}"\n\n'
    text += f"[[rules]]\nname = \"test rule\"\nevents = {json.dumps(events)}\nnotify = {json.dumps(list(recipients))}\n"
    return write_rules(path, text)


# -- 1. the right alerts on the right channels ------------------------------------------------------


def test_a_transition_and_a_walk_away_condition_alert_the_right_people_on_the_right_channels(
    client: TestClient, receiver: Receiver, notifiers: Notifiers, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    with SmtpSink() as smtp:
        rules = write_rules(
            tmp_path / "rules.toml",
            f"""
[channels.ops_webhook]
type = "webhook"
url = "{receiver.url("/ops")}"

[channels.email]
type = "email"
host = "127.0.0.1"
port = {smtp.port}
sender = "dealflow@firm.example"

[channels.chat]
type = "apprise"
url = "json://127.0.0.1:{receiver.port}/chat"

[recipients.ops]
channel = "ops_webhook"

[recipients.owner]
channel = "email"
address = "{{owner}}@firm.example"

[recipients.approver]
channel = "email"
address = "approvals@firm.example"
sees_private_limits = true

[recipients.chat]
channel = "chat"

[[rules]]
name = "transitions"
events = ["LetterOfIntentSigned", "TransitionMeetingHeld", "ContractSigned"]
notify = ["ops", "owner"]

[[rules]]
name = "conditions"
events = ["WalkAwayConditionRaised"]
notify = ["ops", "owner", "approver", "chat"]
urgency = "urgent"
""",
        )
        notifier = notifiers.start(notifier_env(nats_server.url, rules, tmp_path / "notifier.sqlite3"))

        deal_id = open_deal(client, title="Acme payroll", owner="ann")
        sign_letter_of_intent(client, deal_id, actor="bob@firm")
        demanded = client.post(
            f"/deals/{deal_id}/terms", json={"term": "payment_terms_days", "value": 90, "by": "client"}, headers=bearer(sub="carol@firm")
        )
        assert demanded.status_code == 200, demanded.text
        loi_id = f"{deal_id}:{event_version(client, deal_id, 'LetterOfIntentSigned')}"
        condition_id = f"{deal_id}:{event_version(client, deal_id, 'WalkAwayConditionRaised')}"

        wait_until(
            lambda: len(receiver.on("/ops")) >= 2
            and len(smtp.to("ann@firm.example")) >= 2
            and smtp.to("approvals@firm.example")
            and receiver.on("/chat")
            and consumer_idle(nats_server.url),
            what="every alert of the letter of intent and the condition",
            logs=notifiers.logs,
        )
        assert notifier.poll() is None

        # The ops webhook: one signed POST per event, each its own alert.
        ops = {r.json()["event_type"]: r for r in receiver.on("/ops")}
        assert sorted(ops) == ["LetterOfIntentSigned", "WalkAwayConditionRaised"]
        assert len(receiver.on("/ops")) == 2
        loi, condition = ops["LetterOfIntentSigned"].json(), ops["WalkAwayConditionRaised"].json()
        assert (loi["alert_id"], loi["event_id"], loi["deal_id"], loi["urgency"], loi["recipient"]) == (
            f"{loi_id}/ops/ops_webhook", loi_id, deal_id, "normal", "ops"
        )
        assert (condition["alert_id"], condition["deal_id"], condition["urgency"]) == (f"{condition_id}/ops/ops_webhook", deal_id, "urgent")
        for request in receiver.on("/ops"):
            assert request.headers["Idempotency-Key"] == request.json()["alert_id"]
            assert signature_is_valid(request, SECRET)
            assert not signature_is_valid(request, SECRET + "x")  # the check itself can fail

        assert "Acme payroll" in loi["title"] and "Acme Ltd" in loi["title"]
        assert not loi["title"].startswith("URGENT")
        assert "By: bob@firm" in loi["text"] and "Acme payroll" in loi["text"] and "Acme Ltd" in loi["text"]
        assert condition["title"].startswith("URGENT") and "Acme payroll" in condition["title"] and "Acme Ltd" in condition["title"]
        assert condition["event"]["data"]["kind"] == "term_beyond_limit"
        text = condition["text"]
        # The condition is the policy's judgement, recorded by the service itself, not by carol.
        [raised] = [e for e in client.get(f"/deals/{deal_id}/events").json()["events"] if e["type"] == "WalkAwayConditionRaised"]
        # Ops may not see the firm's private limit: the event it is sent is the recorded one, without it.
        assert condition["event"]["data"]["evidence"] == {k: v for k, v in raised["data"]["evidence"].items() if k != "limit"}
        assert {k: v for k, v in condition["event"].items() if k != "data"} == {k: v for k, v in raised.items() if k != "data"}
        assert f"By: {raised['actor']}" in text
        assert "value=90" in text and "limit=" not in text
        assert any(line.startswith("What to do next: ") for line in text.splitlines())

        # Email: the owner (ann) gets both, with the alert's title as Subject; the approver only the condition.
        to_owner = {m.message["X-Dealflow-Alert-Id"]: m for m in smtp.to("ann@firm.example")}
        assert sorted(to_owner) == sorted([f"{loi_id}/owner/email", f"{condition_id}/owner/email"])
        assert len(smtp.to("ann@firm.example")) == 2
        assert to_owner[f"{loi_id}/owner/email"].message["Subject"] == loi["title"]
        assert to_owner[f"{condition_id}/owner/email"].message["Subject"] == condition["title"]
        assert to_owner[f"{condition_id}/owner/email"].message["To"] == "ann@firm.example"
        assert "value=90" in to_owner[f"{condition_id}/owner/email"].message.get_content()
        [approver_mail] = smtp.to("approvals@firm.example")
        assert approver_mail.message["Subject"] == condition["title"]
        assert approver_mail.message["X-Dealflow-Alert-Id"] == f"{condition_id}/approver/email"
        # The approver may see it (sees_private_limits, as in the sample rules); the owner may not.
        assert "limit=60" in approver_mail.message.get_content()
        assert "limit=" not in to_owner[f"{condition_id}/owner/email"].message.get_content()
        assert len(smtp.mails) == 3

        # Chat through Apprise (json://): the condition only, urgent.
        [chat] = receiver.on("/chat")
        assert chat.json()["title"] == condition["title"]
        assert "value=90" in chat.json()["message"] and "What to do next" in chat.json()["message"]

        assert set(statuses(tmp_path / "notifier.sqlite3").values()) == {"delivered"}
        assert len(statuses(tmp_path / "notifier.sqlite3")) == 6


# -- 2. a crash between delivery and ack sends nothing twice -----------------------------------------


def test_killing_the_notifier_after_delivery_before_its_ack_sends_no_duplicate_after_restart(
    client: TestClient, receiver: Receiver, notifiers: Notifiers, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    db = tmp_path / "notifier.sqlite3"
    rules = webhook_rules(tmp_path / "rules.toml", receiver, {"a": "/a", "b": "/b"}, ["LetterOfIntentSigned"], timeout=30)
    env = notifier_env(nats_server.url, rules, db)
    receiver.block("/b")
    first = notifiers.start(env)

    deal_id = open_deal(client)
    sign_letter_of_intent(client, deal_id)
    event_id = f"{deal_id}:2"
    a_id, b_id = f"{event_id}/a/hook_a", f"{event_id}/b/hook_b"

    # A delivered and recorded, B's request held: the event cannot be acknowledged yet.
    wait_until(
        lambda: receiver.on("/a")
        and receiver.on("/b")
        and query(db, "SELECT status FROM notifier_alerts WHERE alert_id LIKE '%/a/%'") == [("delivered",)],
        what="A delivered and B's request arriving",
        logs=notifiers.logs,
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert statuses(db) == {a_id: "delivered"}
    assert not consumer_idle(nats_server.url)  # the event is still unacknowledged

    receiver.release("/b")
    second = notifiers.start(env)
    # JetStream redelivers the event once its ack wait (30 s) has passed.
    wait_until(lambda: statuses(db).get(b_id) == "delivered", timeout=60, what="B delivered after the restart", logs=notifiers.logs)
    wait_until(lambda: consumer_idle(nats_server.url), what="the event acknowledged", logs=notifiers.logs)

    assert receiver.keys("/a") == Counter({a_id: 1})
    assert receiver.keys("/b") == Counter({b_id: 2})  # the held request, then the redelivered event's
    assert statuses(db) == {a_id: "delivered", b_id: "delivered"}
    assert second.poll() is None


# -- 3. retries with back-off, then the dead letter; later events still flow ------------------------


def test_a_failing_webhook_is_retried_then_dead_lettered_and_later_events_still_flow(
    client: TestClient, receiver: Receiver, notifiers: Notifiers, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    db = tmp_path / "notifier.sqlite3"
    receiver.failing.add("/broken")
    rules = webhook_rules(tmp_path / "rules.toml", receiver, {"broken": "/broken", "ok": "/ok"}, ["LetterOfIntentSigned"])
    env = notifier_env(nats_server.url, rules, db)
    notifier = notifiers.start(env)

    first_deal = open_deal(client, title="First")
    sign_letter_of_intent(client, first_deal)
    broken_id, ok_id = f"{first_deal}:2/broken/hook_broken", f"{first_deal}:2/ok/hook_ok"
    wait_until(lambda: statuses(db).get(broken_id) == "dead", what="the broken alert dead-lettered", logs=notifiers.logs)

    # Three tries (the rules' attempts), each recorded, in order, then nothing more.
    tries = query(db, "SELECT attempt, at, result, error FROM notifier_attempts WHERE alert_id = ? ORDER BY attempt", (broken_id,))
    assert [t[0] for t in tries] == [1, 2, 3]
    assert [t[2] for t in tries] == ["failed"] * 3
    assert all("500" in t[3] for t in tries)
    times = [t[1] for t in tries]
    assert times == sorted(times) and len(set(times)) == 3
    assert receiver.keys("/broken") == Counter({broken_id: 3})
    assert query(db, "SELECT status, attempts FROM notifier_alerts WHERE alert_id = ?", (broken_id,)) == [("dead", 3)]
    assert statuses(db).get(ok_id) == "delivered"

    # `dealflow alerts --failed --json` shows the dead alert, with its tries, and not the delivered one.
    listed = dealflow("alerts", "--failed", "--json", env=clean_env(DEALFLOW_NOTIFIER_DB=str(db)))
    assert listed.returncode == 0, listed.stderr
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["alert_id"], r["status"], r["attempts"]) for r in records] == [(broken_id, "dead", 3)]
    assert "500" in records[0]["last_error"]
    assert [t[0] for t in records[0]["tries"]] == [1, 2, 3]

    # The courtesy copy on deals.alerts.dead carries the error.
    dead = wait_until(lambda: dead_letters_on_jetstream(nats_server.url), what="a message on deals.alerts.dead")
    assert [(d["kind"], d["attempts"], d["alert"]["alert_id"]) for d in dead] == [("alert", 3, broken_id)]  # type: ignore[index]
    assert "500" in str(dead[0]["error"])

    # A later event still reaches the working recipient.
    later = open_deal(client, title="Later")
    sign_letter_of_intent(client, later)
    wait_until(lambda: f"{later}:2/ok/hook_ok" in receiver.keys("/ok"), what="the later event's alert", logs=notifiers.logs)
    assert notifier.poll() is None


# -- 4. two notifiers share the work, each alert once -----------------------------------------------


def test_two_notifiers_deliver_each_alert_exactly_once(
    client: TestClient, receiver: Receiver, notifiers: Notifiers, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    db = tmp_path / "notifier.sqlite3"
    rules = webhook_rules(tmp_path / "rules.toml", receiver, {"ops": "/ops"}, ["DealOpened", "LetterOfIntentSigned"])
    # Same rules and store; a different webhook secret each, so a signature tells which process sent it.
    secrets = ["secret-one", "secret-two"]
    # One after the other: two notifiers opening a fresh SQLite store at the same instant can fail
    # with "database is locked" (a start-up race in AlertStore, reported separately).
    started = []
    for secret in secrets:
        started.append(notifiers.start(notifier_env(nats_server.url, rules, db, secret)))
        wait_until(lambda: notifiers.consuming(started[-1]), what="the notifier consuming", logs=notifiers.logs)

    deal_ids = []
    for n in range(15):
        deal_ids.append(open_deal(client, title=f"deal {n}"))
        sign_letter_of_intent(client, deal_ids[-1])
    expected = {f"{deal_id}:{version}/ops/hook_ops" for deal_id in deal_ids for version in (1, 2)}

    wait_until(
        lambda: set(receiver.keys()) >= expected and consumer_idle(nats_server.url),
        timeout=30,
        what="all 30 alerts delivered and acknowledged",
        logs=notifiers.logs,
    )
    assert receiver.keys() == Counter(dict.fromkeys(expected, 1))
    assert statuses(db) == dict.fromkeys(expected, "delivered")
    assert all(process.poll() is None for process in started)
    senders = Counter(next(s for s in secrets if signature_is_valid(r, s)) for r in receiver.on("/ops"))
    assert sum(senders.values()) == 30
    assert set(senders) == set(secrets), f"one notifier did all the work: {senders}"


# -- 5. invalid messages are dead-lettered with the reason, and the notifier goes on -----------------


def test_invalid_messages_are_dead_lettered_with_the_reason_and_the_notifier_keeps_going(
    client: TestClient, receiver: Receiver, notifiers: Notifiers, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    db = tmp_path / "notifier.sqlite3"
    rules = webhook_rules(tmp_path / "rules.toml", receiver, {"ops": "/ops"}, ["DealOpened", "LetterOfIntentSigned"])
    notifier = notifiers.start(notifier_env(nats_server.url, rules, db))
    wait_until(lambda: notifiers.consuming(notifier), what="the notifier consuming", logs=notifiers.logs)

    # Junk published straight to JetStream: not JSON; JSON missing most fields; a DealOpened
    # whose data lacks the deal's title, client and owner (it once crashed the notifier).
    not_json, incomplete, empty = str(uuid4()), str(uuid4()), str(uuid4())
    junk = {
        f"deals.events.{not_json}.Junk": b"not json",
        f"deals.events.{incomplete}.LetterOfIntentSigned": json.dumps({"deal_id": incomplete, "type": "LetterOfIntentSigned"}).encode(),
        f"deals.events.{empty}.DealOpened": json.dumps(
            {
                "deal_id": empty,
                "version": 1,
                "type": "DealOpened",
                "timestamp": "2026-11-23T09:00:00+00:00",
                "actor": "x",
                "correlation_id": "c",
                "data": {},
            }
        ).encode(),
    }
    for subject, body in junk.items():
        publish(nats_server.url, subject, body, {"ce-id": f"{subject.split('.')[2]}:1"})
    deal_id = open_deal(client)
    sign_letter_of_intent(client, deal_id)

    wait_until(
        lambda: f"{deal_id}:2/ops/hook_ops" in receiver.keys("/ops") and consumer_idle(nats_server.url),
        what="the valid event alerted after the junk",
        logs=notifiers.logs,
    )
    assert notifier.poll() is None, notifiers.logs[0].read_text()[-3000:]
    assert set(receiver.keys("/ops")) == {f"{deal_id}:1/ops/hook_ops", f"{deal_id}:2/ops/hook_ops"}  # nothing for the junk

    env = clean_env(DEALFLOW_NOTIFIER_DB=str(db))
    listed = dealflow("alerts", "--failed", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    reasons = {d["subject"]: d["reason"] for d in map(json.loads, listed.stdout.splitlines()) if "dead_letter" in d}
    assert set(reasons) == set(junk)
    assert "json" in reasons[f"deals.events.{not_json}.Junk"].lower()
    assert any(field in reasons[f"deals.events.{incomplete}.LetterOfIntentSigned"] for field in ("version", "timestamp", "actor", "data"))
    assert any(field in reasons[f"deals.events.{empty}.DealOpened"] for field in ("title", "client_name", "owner"))
    readable = dealflow("alerts", "--failed", env=env)
    for subject, reason in reasons.items():
        assert any(subject in line and reason in line for line in readable.stdout.splitlines()), readable.stdout

    def all_dead() -> list[dict[str, object]] | None:
        found = dead_letters_on_jetstream(nats_server.url)
        return found if len(found) >= len(junk) else None

    dead = wait_until(all_dead, what="the junk on deals.alerts.dead")
    assert len(dead) == len(junk) and all(d["kind"] == "message" for d in dead)
    by_subject = {d["subject"]: d for d in dead}
    assert {subject: d["error"] for subject, d in by_subject.items()} == reasons
    assert {subject: str(d["data"]).encode() for subject, d in by_subject.items()} == junk


# -- 6. `dealflow up` starts the notifier ----------------------------------------------------------


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_starts_the_notifier_and_alerts_list_what_it_delivered(tmp_path: Path) -> None:
    var = tmp_path / "var"
    rules = write_rules(
        tmp_path / "rules.toml",
        """
[channels.log]
type = "log"

[recipients.journal]
channel = "log"

[[rules]]
name = "transitions"
events = ["LetterOfIntentSigned"]
notify = ["journal"]
""",
    )
    env = clean_env(
        DEALFLOW_SQLITE_PATH=str(var / "deals.sqlite3"), DEALFLOW_NOTIFIER_DB=str(var / "notifier.sqlite3"), DEALFLOW_ALERT_RULES=str(rules)
    )
    port, nats_port = free_port(), free_port()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [*DEALFLOW, "up", "--port", str(port), "--nats-port", str(nats_port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    children: list[int] = []
    try:

        def serving() -> bool:
            assert up.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/schema/openapi.json", headers=bearer(), timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, timeout=30, what="dealflow up serving", logs=[log])
        children = children_of(up.pid)
        assert len(children) == 3, children  # nats-server, the deal service, the notifier
        base = f"http://127.0.0.1:{port}"
        deal_id = httpx.post(f"{base}/deals", headers=bearer(), json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}).json()["id"]
        assert httpx.post(f"{base}/deals/{deal_id}/letter-of-intent", headers=bearer(sub="bob@firm")).status_code == 200

        alert_id = f"{deal_id}:2/journal/log"
        wait_until(lambda: statuses(var / "notifier.sqlite3").get(alert_id) == "delivered", timeout=30, what="the alert delivered", logs=[log])
        listed = dealflow("alerts", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        [record] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert (record["alert_id"], record["event_type"], record["deal_id"], record["status"], record["channel"]) == (
            alert_id, "LetterOfIntentSigned", deal_id, "delivered", "log"
        )
        assert [(t[0], t[2]) for t in record["tries"]] == [(1, "delivered")]
        assert alert_id in log.read_text()  # the log channel wrote it
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
    wait_until(lambda: not any(alive(pid) for pid in children), timeout=10, what="up's children gone", logs=[log])
    assert up.returncode == 0, log.read_text()[-3000:]
