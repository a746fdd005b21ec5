"""The command table is the one list of commands: the lifecycle, HTTP and NATS hold the same set."""

from __future__ import annotations

import re

from dealflow.deal_lifecycle.application.command_table import COMMANDS
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.lifecycle import RECORDED_BY_THE_SERVICE, DealLifecycle
from dealflow.deal_lifecycle.entrypoints.nats_commands import MESSAGES
from tests.support import TEST_KEYS

NAMES = {command.name for command in COMMANDS}


def test_each_command_is_one_row() -> None:
    assert len(NAMES) == len(COMMANDS)


def test_the_lifecycle_events_are_the_commands_of_the_table() -> None:
    # open_deal makes the deal: the machine starts at its initial stage, prospect. The passing of time
    # is recorded by the service alone: no caller sends it, so no door takes it.
    assert {event.id for event in DealLifecycle.events} == (NAMES - {"open_deal"}) | RECORDED_BY_THE_SERVICE
    assert not NAMES & RECORDED_BY_THE_SERVICE


def test_the_http_command_routes_are_the_commands_of_the_table_at_their_paths() -> None:
    document = service_app(Settings(), keys=TEST_KEYS).openapi_schema.to_schema()
    posts = {
        operation["operationId"]: path for path, item in document["paths"].items() for method, operation in item.items() if method == "post"
    }
    # operationIds end with the handler's name: the command's, in CamelCase.
    by_command = {next(c.name for c in COMMANDS if op.endswith(_camel(c.name))): path for op, path in posts.items()}
    assert set(by_command) == NAMES
    assert by_command == {command.name: command.path for command in COMMANDS}


def test_the_nats_subjects_are_the_commands_of_the_table_with_the_path_ids_as_fields() -> None:
    assert set(MESSAGES) == NAMES
    for command in COMMANDS:
        ids = set(re.findall(r"{(\w+)}", command.path))
        body = set(command.body.model_fields) if command.body else set()
        assert set(MESSAGES[command.name].model_fields) == ids | body, command.name


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))
