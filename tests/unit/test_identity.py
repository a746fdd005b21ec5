"""Bearer tokens: what is accepted, and every forgery and mistake that must not be."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from dealflow.deal_lifecycle.adapters.identity import InvalidToken, KeysUnavailable, TrustedKeys, dev_key, mint

EC_KEY = ec.generate_private_key(ec.SECP256R1())
ROTATED = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
PUBLIC_PEM = EC_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(key: Any, kid: str | None, algorithm: type = ECAlgorithm, **extra: str) -> dict[str, Any]:
    entry = {**json.loads(algorithm.to_jwk(key.public_key())), **extra}
    return entry if kid is None else {**entry, "kid": kid}


def keys(*entries: dict[str, Any], **options: Any) -> TrustedKeys:
    return TrustedKeys(jwks={"keys": list(entries)}, **options)


def sign(key: Any = EC_KEY, kid: str | None = "k1", algorithm: str = "ES256", **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "crm", "roles": ["emitter"], "iat": now, "exp": now + 300, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def verify(trusted: TrustedKeys, token: str) -> Any:
    return asyncio.run(trusted.verify(token))


TRUSTED = keys(jwk(EC_KEY, "k1"))


def test_a_good_token_names_its_sub_and_roles() -> None:
    caller = verify(TRUSTED, sign(roles=["emitter", "ops"]))
    assert (caller.sub, caller.roles) == ("crm", frozenset({"emitter", "ops"}))


@pytest.mark.parametrize(("algorithm", "key", "entry"), [
    ("ES256", EC_KEY, jwk(EC_KEY, "k1")),
    ("RS256", RSA_KEY, jwk(RSA_KEY, "k1", RSAAlgorithm)),
    ("EdDSA", ED_KEY, jwk(ED_KEY, "k1", OKPAlgorithm)),
])
def test_each_asymmetric_algorithm_is_accepted(algorithm: str, key: Any, entry: dict[str, Any]) -> None:
    assert verify(keys(entry), sign(key, algorithm=algorithm)).sub == "crm"


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'kid': 'k1'})}.{part(claims)}."


def _hmac_with_the_public_key() -> str:
    """HS256 "signed" with the public key as its secret, by hand: PyJWT itself refuses to make one."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'kid': 'k1'})}.{part({'sub': 'crm', 'roles': ['admin'], 'exp': int(time.time()) + 300})}"
    mac = hmac.new(PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _edited(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


# Made when each test runs (not at collection), so a slow run cannot expire the good ones.
@pytest.mark.parametrize(("make", "why"), [
    (lambda: _unsigned({"sub": "crm", "roles": ["admin"], "exp": int(time.time()) + 300}), "not none"),
    # The classic: HS256 "signed" with the public key as its secret.
    (lambda: _hmac_with_the_public_key(), "not HS256"),
    (lambda: sign(exp=int(time.time()) - 60), "expired"),
    (lambda: sign(exp=None), "no exp"),
    (lambda: sign(nbf=int(time.time()) + 120), "not valid yet"),
    (lambda: sign(kid="someone-else"), "unknown kid"),
    (lambda: _edited(sign()), "does not verify"),
    (lambda: sign(ROTATED), "does not verify"),
    (lambda: sign(sub=None), "no sub"),
    (lambda: sign(sub=""), "sub"),
    (lambda: sign(sub="x" * 201), "sub"),
    (lambda: sign(sub="ann\u202e"), "sub"),
    (lambda: sign(roles="admin"), "roles"),
    (lambda: sign(roles=[1]), "roles"),
    (lambda: "not-a-token", "not a JWT"),
    (lambda: "a" * 9000, "1 to 8192"),
    (lambda: sign(RSA_KEY, algorithm="RS256"), "is for ES256"),
])
def test_forged_expired_and_malformed_tokens_are_refused(make: Callable[[], str], why: str) -> None:
    with pytest.raises(InvalidToken, match=why):
        verify(TRUSTED, make())


def test_the_clock_leeway_is_30_seconds() -> None:
    assert verify(TRUSTED, sign(exp=int(time.time()) - 20)).sub == "crm"
    with pytest.raises(InvalidToken, match="expired"):
        verify(TRUSTED, sign(exp=int(time.time()) - 40))


def test_issuer_and_audience_are_required_when_set() -> None:
    strict = keys(jwk(EC_KEY, "k1"), issuer="https://idp.example", audience="dealflow")
    assert verify(strict, sign(iss="https://idp.example", aud="dealflow")).sub == "crm"
    for claims, why in (
        ({"iss": "https://evil.example", "aud": "dealflow"}, "another issuer"),
        ({"iss": "https://idp.example", "aud": "billing"}, "another audience"),
        ({"aud": "dealflow"}, "no iss"),
        ({"iss": "https://idp.example"}, "no aud"),
    ):
        with pytest.raises(InvalidToken, match=why):
            verify(strict, sign(**claims))


def test_two_keys_during_a_rotation_are_both_accepted_and_kid_chooses() -> None:
    rotating = keys(jwk(EC_KEY, "k1"), jwk(ROTATED, "k2"))
    assert verify(rotating, sign(EC_KEY, kid="k1")).sub == "crm"
    assert verify(rotating, sign(ROTATED, kid="k2")).sub == "crm"
    with pytest.raises(InvalidToken, match="does not verify"):
        verify(rotating, sign(ROTATED, kid="k1"))


def test_a_token_without_kid_is_accepted_only_while_one_key_is_trusted() -> None:
    assert verify(keys(jwk(EC_KEY, None)), sign(kid=None)).sub == "crm"
    with pytest.raises(InvalidToken, match="more than one key"):
        verify(keys(jwk(EC_KEY, "k1"), jwk(ROTATED, "k2")), sign(kid=None))


def test_keys_that_share_a_kid_or_have_none_are_never_told_apart() -> None:
    # Two keys without kid are two keys: a token without kid is refused, whichever signed it.
    two_without_kid = keys(jwk(EC_KEY, None), jwk(ROTATED, None))
    for signer in (EC_KEY, ROTATED):
        with pytest.raises(InvalidToken, match="more than one key"):
            verify(two_without_kid, sign(signer, kid=None))
    shared = keys(jwk(EC_KEY, "k1"), jwk(ROTATED, "k1"), jwk(RSA_KEY, "k2", RSAAlgorithm))
    for signer in (EC_KEY, ROTATED):
        with pytest.raises(InvalidToken, match="two trusted keys share"):
            verify(shared, sign(signer, kid="k1"))
    assert verify(shared, sign(RSA_KEY, kid="k2", algorithm="RS256")).sub == "crm"


@pytest.mark.parametrize("sub", ["dealflow", " Dealflow "])
def test_no_caller_may_act_as_the_service_itself(sub: str) -> None:
    with pytest.raises(InvalidToken, match="the service's own name"):
        verify(TRUSTED, sign(sub=sub))


def test_symmetric_private_and_foreign_keys_of_a_jwks_are_never_trusted() -> None:
    secret = {"kty": "oct", "kid": "k1", "k": base64.urlsafe_b64encode(PUBLIC_PEM).decode()}
    private = {**jwk(EC_KEY, "k1"), "d": "AAAA"}
    encryption = jwk(EC_KEY, "k1", use="enc")
    for entry in (secret, private, encryption):
        with pytest.raises(InvalidToken, match="unknown kid"):
            verify(keys(entry), sign())


def test_a_jwks_file_is_read_at_start_and_a_missing_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(EC_KEY, "k1")]}))
    trusted = TrustedKeys(str(path))
    assert trusted.load_now() == 1
    assert verify(trusted, sign()).sub == "crm"
    with pytest.raises(KeysUnavailable, match="not found: .*nope.json"):
        TrustedKeys(str(tmp_path / "nope.json")).load_now()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(KeysUnavailable, match="no \"keys\" list"):
        TrustedKeys(str(tmp_path / "bad.json")).load_now()
    with pytest.raises(ValueError, match="https://"):
        TrustedKeys("http://idp.example/jwks.json")


def test_the_development_key_signs_tokens_the_service_trusts_and_is_made_once(tmp_path: Path) -> None:
    token = mint(tmp_path, sub="crm", roles=["emitter"], ttl_seconds=60)
    assert verify(dev_key(tmp_path), token).roles == {"emitter"}
    assert (tmp_path / "dev-signing-key.pem").stat().st_mode & 0o777 == 0o600
    assert verify(dev_key(tmp_path), mint(tmp_path, sub="ops", roles=["ops"], ttl_seconds=60)).sub == "ops"
    with pytest.raises(InvalidToken):
        verify(dev_key(tmp_path / "another"), token)
