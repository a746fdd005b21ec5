"""Trusted keys from an identity provider's https:// JWKS: fetched without blocking, cached, and fetched
again (once, rate-limited) when a token names a key the cached set does not hold."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm

from dealflow.deal_lifecycle.adapters import identity
from dealflow.deal_lifecycle.adapters.identity import InvalidToken, KeysUnavailable, TrustedKeys


class Provider:
    """An identity provider's JWKS endpoint over TLS, on this machine, whose keys the test rotates."""

    def __init__(self, directory: Path) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.down = False
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.cert = directory / "idp.pem"
        self.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file = directory / "idp.key"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                provider.fetches += 1
                if provider.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps({"keys": [json.loads(ECAlgorithm.to_jwk(k.public_key())) | {"kid": kid} for kid, k in provider.keys.items()]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return self.keys[kid]

    def trusted(self) -> TrustedKeys:
        return TrustedKeys(self.url, verify=ssl.create_default_context(cafile=str(self.cert)))


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    running = Provider(tmp_path)
    try:
        yield running
    finally:
        running.server.shutdown()


def token(key: Any, kid: str) -> str:
    return jwt.encode({"sub": "crm", "roles": ["emitter"], "exp": int(time.time()) + 300}, key, algorithm="ES256", headers={"kid": kid})


def test_keys_are_fetched_once_and_cached(provider: Provider) -> None:
    key = provider.add_key("k1")
    trusted = provider.trusted()

    async def twice() -> None:
        assert (await trusted.verify(token(key, "k1"))).sub == "crm"
        assert (await trusted.verify(token(key, "k1"))).sub == "crm"

    asyncio.run(twice())
    assert provider.fetches == 1


def test_a_rotated_key_is_fetched_on_its_first_token_and_an_unknown_one_refused_after_one_look(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = provider.add_key("k1")
    trusted = provider.trusted()
    monkeypatch.setattr(identity, "REFRESH_AT_MOST_EVERY_SECONDS", 0.0)

    async def rotate() -> None:
        assert (await trusted.verify(token(old, "k1"))).sub == "crm"
        new = provider.add_key("k2")  # the provider rotates: k2 is published
        assert (await trusted.verify(token(new, "k2"))).sub == "crm"
        assert provider.fetches == 2
        stranger = ec.generate_private_key(ec.SECP256R1())
        with pytest.raises(InvalidToken, match="unknown kid"):
            await trusted.verify(token(stranger, "k9"))
        assert provider.fetches == 3  # looked once more, then refused

    asyncio.run(rotate())


def test_unknown_kids_do_not_make_the_service_hammer_the_provider(provider: Provider) -> None:
    key = provider.add_key("k1")
    trusted = provider.trusted()

    async def flood() -> None:
        await trusted.verify(token(key, "k1"))
        for n in range(20):
            with pytest.raises(InvalidToken, match="unknown kid"):
                await trusted.verify(token(key, f"nope-{n}"))

    asyncio.run(flood())
    assert provider.fetches == 2  # one refresh within REFRESH_AT_MOST_EVERY_SECONDS, however many unknown kids


def test_a_provider_that_is_down_leaves_the_keys_already_fetched_in_use(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    key = provider.add_key("k1")
    trusted = provider.trusted()
    monkeypatch.setattr(identity, "REFRESH_AT_MOST_EVERY_SECONDS", 0.0)

    async def outage() -> None:
        await trusted.verify(token(key, "k1"))
        provider.down = True
        with pytest.raises(InvalidToken, match="unknown kid"):
            await trusted.verify(token(key, "k2"))
        assert (await trusted.verify(token(key, "k1"))).sub == "crm"

    asyncio.run(outage())


def test_with_no_keys_at_all_the_answer_is_that_keys_are_unavailable_and_the_provider_is_not_hammered(provider: Provider) -> None:
    provider.down = True
    trusted = provider.trusted()

    async def attempts() -> None:
        for _ in range(5):
            with pytest.raises(KeysUnavailable, match="cannot be read now") as unavailable:
                await trusted.verify(token(ec.generate_private_key(ec.SECP256R1()), "k1"))
            assert provider.url not in str(unavailable.value)  # where the keys live is for the log, not the caller

    asyncio.run(attempts())
    assert provider.fetches == 1


def test_a_jwks_larger_than_any_real_one_is_refused(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        provider.add_key(f"k{n}")
    monkeypatch.setattr(identity, "MAX_JWKS_BYTES", 300)
    with pytest.raises(KeysUnavailable):
        asyncio.run(provider.trusted().verify(token(provider.keys["k1"], "k1")))


def test_a_jwks_file_is_read_again_for_a_key_it_did_not_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "REFRESH_AT_MOST_EVERY_SECONDS", 0.0)
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"

    def publish(*keys: tuple[str, Any]) -> None:
        path.write_text(json.dumps({"keys": [json.loads(ECAlgorithm.to_jwk(k.public_key())) | {"kid": kid} for kid, k in keys]}))

    publish(("k1", first))
    trusted = TrustedKeys(str(path))
    trusted.load_now()

    async def rotate() -> None:
        assert (await trusted.verify(token(first, "k1"))).sub == "crm"
        publish(("k1", first), ("k2", second))  # rotated without a restart
        assert (await trusted.verify(token(second, "k2"))).sub == "crm"

    asyncio.run(rotate())


def test_a_certificate_the_service_does_not_trust_is_refused(provider: Provider) -> None:
    provider.add_key("k1")
    with pytest.raises(KeysUnavailable):
        asyncio.run(TrustedKeys(provider.url).verify(token(provider.keys["k1"], "k1")))
