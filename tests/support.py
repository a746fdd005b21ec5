"""Small builders shared by the tests: the same steps a real client takes, in the domain's words."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from jwt.algorithms import ECAlgorithm

from dealflow.deal_lifecycle.adapters.identity import TrustedKeys
from dealflow.deal_lifecycle.adapters.policy_file import load_policy
from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Attribution, Participant, Role, Side

ROOT = Path(__file__).resolve().parents[1]
POLICY_FILE = ROOT / "deploy" / "policy.toml"
# The sample policy shipped in deploy/: payment terms public 45 / limit 60 days (higher is worse),
# discount public 0 / limit 10 %, non-negotiable msa_signed_first, minimum annual value 50 000,
# concessions: at most 2 more given than received, and something won after 3 given.
POLICY = load_policy(POLICY_FILE)

BY = Attribution(actor="ann@firm", correlation_id="corr-1")
TODAY = date(2026, 11, 23)
LATER = TODAY + timedelta(days=90)
FULL_ATTENDANCE = [Participant("Sam", Role.SALES), Participant("Olu", Role.OPERATIONS), Participant("Cleo", Role.CLIENT)]


# What the tests' callers may do unless a test says otherwise: send commands and waive conditions
# (so they see private limits too), and watch the stream.
ROLES = ("emitter", "approver", "ops")


def ctx(actor: str = "ann@firm", *, key: str | None = None, expected: int | None = None, roles: tuple[str, ...] = ROLES) -> c.CommandContext:
    return c.CommandContext(actor=actor, correlation_id="corr-1", idempotency_key=key, expected_version=expected, roles=frozenset(roles))


# -- tokens: the tests' own identity provider ----------------------------------------------------
# One EC P-256 key for the run: the service under test trusts its public half (TEST_KEYS, or the
# JWKS file of jwks_file()), and token() signs with the private half, as an identity provider would.
_SIGNING_KEY = generate_private_key(SECP256R1())
TEST_KID = "test-key-1"
TEST_JWKS = {"keys": [{**json.loads(ECAlgorithm.to_jwk(_SIGNING_KEY.public_key())), "kid": TEST_KID, "use": "sig", "alg": "ES256"}]}
TEST_KEYS = TrustedKeys(jwks=TEST_JWKS)


def token(*roles: str, sub: str = "ann@firm", ttl: int = 3600, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    """A bearer token the service under test trusts, with these roles (the tests' default ones if none)."""
    now = int(time.time())
    body = {"sub": sub, "roles": list(roles or ROLES), "iat": now, "exp": now + ttl, "jti": uuid4().hex, **claims}
    return jwt.encode(body, _SIGNING_KEY, algorithm="ES256", headers={"kid": TEST_KID, **(headers or {})})


def bearer(*roles: str, sub: str = "ann@firm") -> dict[str, str]:
    """The Authorization header of a caller with these roles (the tests' default ones if none)."""
    return {"Authorization": f"Bearer {token(*roles, sub=sub)}"}


def jwks_file(directory: Path) -> Path:
    """The trusted keys as a JWKS file, for a `dealflow` process under test (DEALFLOW_AUTH_JWKS)."""
    path = directory / "jwks.json"
    path.write_text(json.dumps(TEST_JWKS))
    return path


def expectation(side: Side, statement: str = "monthly report") -> c.RecordExpectation:
    return c.RecordExpectation(
        side=side, statement=statement, metric="reports delivered", target="12 a year", due=date.today() + timedelta(days=90), priority=1
    )


def meeting(*roles: Role) -> c.HoldTransitionMeeting:
    attendees = [p for p in FULL_ATTENDANCE if p.role in (roles or tuple(Role))]
    return c.HoldTransitionMeeting(participants=[c.ParticipantIn(name=p.name, role=p.role) for p in attendees])


def open_deal(service: DealService, title: str = "Acme payroll", owner: str = "ann") -> UUID:
    outcome = service.handle("open_deal", None, c.OpenDeal(title=title, client_name="Acme Ltd", owner=owner), ctx())
    return outcome.deal.id


def in_transition_meeting(service: DealService, *roles: Role) -> UUID:
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx())
    service.handle("hold_transition_meeting", deal_id, meeting(*roles), ctx())
    return deal_id


def ready_to_sign(service: DealService) -> UUID:
    """A deal with every signing blocker cleared: the way a real deal gets there."""
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx())
    for side in Side:
        eid = service.handle("record_expectation", deal_id, expectation(side), ctx()).created_id
        assert eid is not None
        service.handle("decide_expectation", deal_id, c.DecideExpectation(agreed=True), ctx(), expectation_id=eid)
    service.handle("hold_transition_meeting", deal_id, meeting(), ctx())
    pid = service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 30 days"), ctx()).created_id
    assert pid is not None
    service.handle("decide_sales_promise", deal_id, c.DecideSalesPromise(accepted=True), ctx(), promise_id=pid)
    return deal_id


def domain_deal_in_meeting() -> Deal:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    deal.sign_letter_of_intent(by=BY)
    deal.hold_transition_meeting(participants=FULL_ATTENDANCE, by=BY)
    return deal


Client = TypeVar("Client", bound=httpx.Client)


def signed_in(client: Client, *roles: str, sub: str = "ann@firm") -> Client:
    """The client, sending a caller's token (the tests' default roles if none) with every request."""
    client.headers.update(bearer(*roles, sub=sub))
    return client
