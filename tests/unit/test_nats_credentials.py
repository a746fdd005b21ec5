"""How a process proves who it is to NATS, and that no secret of it reaches a log line."""

from __future__ import annotations

from dealflow.nats_connection import Credentials, shown


def test_credentials_come_from_a_creds_file_or_an_nkey_seed_or_the_url() -> None:
    assert Credentials.from_env({}).options() == {}
    assert Credentials.from_env({"NATS_CREDS": "/etc/dealflow/nats.creds"}).options() == {"user_credentials": "/etc/dealflow/nats.creds"}
    assert Credentials.from_env({"NATS_NKEY_SEED": "var/nats/credentials/watcher.nk"}).options() == {"nkeys_seed": "var/nats/credentials/watcher.nk"}
    assert Credentials.from_env({"NATS_NKEY_SEED": "SUAM6ZQ4 "}).options() == {"nkeys_seed_str": "SUAM6ZQ4"}


def test_a_user_and_password_in_a_nats_url_are_never_shown() -> None:
    assert shown(["nats://deals:s3cret@nats-1:4222", "nats://nats-2:4222", "tls://token@nats-3"]) == [
        "nats://***@nats-1:4222",
        "nats://nats-2:4222",
        "tls://***@nats-3",
    ]
