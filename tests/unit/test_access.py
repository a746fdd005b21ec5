"""Who may do what: the command table's roles, the reads' table, and the one rule that judges both."""

from __future__ import annotations

import pytest

from dealflow.deal_lifecycle.application.access import (
    READS,
    SEES_PRIVATE_LIMITS,
    AccessRole,
    Caller,
    Forbidden,
    authorize,
)
from dealflow.deal_lifecycle.application.command_table import BY_NAME, COMMANDS
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from tests.support import TEST_KEYS

EMITTER, OPS, AUDITOR, APPROVER, ADMIN = (AccessRole(r) for r in ("emitter", "ops", "auditor", "approver", "admin"))


def test_every_command_is_for_emitters_and_admins_but_waivers_for_approvers_and_admins() -> None:
    for command in COMMANDS:
        expected = {APPROVER, ADMIN} if command.name == "waive_condition" else {EMITTER, ADMIN}
        assert command.roles == expected, command.name


def test_ops_and_auditors_send_no_command() -> None:
    assert all(OPS not in c.roles and AUDITOR not in c.roles for c in COMMANDS)


def test_every_role_reads_and_the_stream_is_for_those_who_watch() -> None:
    assert {name for name, roles in READS.items() if roles == frozenset(AccessRole)} == {
        "list_deals", "get_deal", "history", "health", "verify_deal", "policy"
    }
    assert READS["stream"] == {OPS, AUDITOR, ADMIN}
    assert READS["alerts"] == {OPS, AUDITOR, ADMIN}


def test_authorize_names_the_role_it_allowed_the_specific_one_before_admin() -> None:
    waive = BY_NAME["waive_condition"].roles
    assert authorize(waive, {"approver", "admin"}, "waive_condition") == "approver"
    assert authorize(waive, {"admin"}, "waive_condition") == "admin"
    assert authorize(BY_NAME["open_deal"].roles, {"emitter", "ops"}, "open_deal") == "emitter"


@pytest.mark.parametrize("roles", [set(), {"ops"}, {"auditor", "emitter"}, {"Approver"}, {"approver "}, {"root"}])
def test_authorize_refuses_a_caller_without_an_allowed_role_and_names_those_that_are(roles: set[str]) -> None:
    with pytest.raises(Forbidden) as refused:
        authorize(BY_NAME["waive_condition"].roles, roles, "waive_condition")
    assert refused.value.code == "forbidden"
    assert refused.value.allowed_roles == ["approver", "admin"]


def test_private_limits_are_for_approvers_and_admins_only() -> None:
    assert SEES_PRIVATE_LIMITS == {APPROVER, ADMIN}
    assert [Caller("x", frozenset({r})).sees_private_limits for r in ("emitter", "ops", "auditor", "approver", "admin")] == [
        False, False, False, True, True
    ]


def test_every_http_route_declares_who_may_call_it_and_only_health_live_and_the_dashboard_are_open() -> None:
    # Access is never granted by omission: a route without a declaration is refused to everyone,
    # and this test makes sure no route of ours is left without one.
    app = service_app(Settings(), keys=TEST_KEYS)
    declared: dict[str, str] = {}
    for route in app.routes:
        if route.path.startswith("/schema"):
            continue  # Litestar's OpenAPI document and viewers: open by design
        for handler in getattr(route, "route_handlers", []):
            if handler.http_methods == {"OPTIONS"}:
                continue  # Litestar's own: declaring nothing, it is refused to everyone (fail closed)
            opt = handler.opt
            kind = "command" if "command" in opt else "read" if "read" in opt else "open" if opt.get("open") else None
            assert kind is not None, f"{route.path} declares no access"
            declared[f"{sorted(handler.http_methods)[0]} {route.path}"] = opt.get("command") or opt.get("read") or "open"
    assert {v for k, v in declared.items() if k.startswith("POST")} == set(BY_NAME)
    assert {v for k, v in declared.items() if k.startswith("GET")} == set(READS) | {"open"}
    # The dashboard's pages and assets carry no data: what they show comes from the API with the caller's token.
    assert sorted(k for k, v in declared.items() if v == "open") == [
        "GET /health/live", "GET /ui", "GET /ui/alerts", "GET /ui/deals/{deal_id:uuid}", "GET /ui/static/{name:str}"
    ]
