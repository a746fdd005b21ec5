"""Who is calling: bearer tokens (JWT) verified against public keys only, with PyJWT.

The trusted keys are a JWKS: a file, or an https:// URL fetched without blocking the event loop,
cached, and fetched again (at most every few seconds) when a token names a key (`kid`) the cached
set does not hold, because the identity provider rotated its keys. Only asymmetric algorithms are
trusted, and the algorithm is the key's, not the token's: `alg: none`, HMAC (a public key used as
a shared secret) or any algorithm other than the key's are refused before a signature is checked.
`sub` is the actor; `roles` (a list of strings) are the roles.

With no JWKS configured, `dealflow up` and `serve` make a development key under var/ and trust it;
`dealflow token` signs tokens with it (dev_key, mint). There is no way to turn verification off.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from dealflow.deal_lifecycle.application.access import AuthUnavailable, Caller, Unauthenticated
from dealflow.deal_lifecycle.domain.deal import SERVICE as SERVICE_ACTOR
from dealflow.secret_files import write_once

log = structlog.get_logger("dealflow.identity")

ALGORITHMS = ("ES256", "RS256", "EdDSA")
LEEWAY_SECONDS = 30
# A JWKS from a URL is fetched again at most this often, however many tokens name unknown keys.
REFRESH_AT_MOST_EVERY_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1024 * 1024
# An Authorization header is at most this long (a real token is a few hundred bytes to 2 KB).
MAX_TOKEN_CHARACTERS = 8192
MAX_SUB_CHARACTERS = 200
MAX_ROLES = 20
DEV_KEY_ID = "dealflow-dev"
DEV_KEY_FILE = "dev-signing-key.pem"


class InvalidToken(Unauthenticated):
    """The token is malformed, forged, expired, or not for us; the message says which, never the token."""


class KeysUnavailable(AuthUnavailable):
    """The JWKS could not be read or fetched, and no earlier copy is held: no token can be verified now."""


class TrustedKeys:
    """The public keys tokens are verified against: a JWKS file or https:// URL, or one in memory (the dev key)."""

    def __init__(
        self,
        source: str | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if (source is None) == (jwks is None):
            raise ValueError("trust a JWKS source or a JWKS, not both")
        if source is not None and "://" in source and not source.startswith("https://"):
            raise ValueError(f"DEALFLOW_AUTH_JWKS must be a file path or an https:// URL, not {source.split('://')[0][:20]}://")
        self.source = source
        self.issuer = issuer
        self.audience = audience
        self._verify = verify  # for https: True (system CAs, or SSL_CERT_FILE), or a context
        self._keys: dict[str | None, jwt.PyJWK | None] | None = None if jwks is None else _usable(jwks)
        self._refreshed_at = self._failed_at = -float("inf")
        self._lock = asyncio.Lock()

    @property
    def is_url(self) -> bool:
        return self.source is not None and self.source.startswith("https://")

    def describe(self) -> str:
        return self.source or "the development key"

    def load_now(self) -> int:
        """Read a JWKS file at start-up, so a missing or broken one stops the service there; the number of keys.
        A URL is fetched on the first token (the provider may be down at start-up without stopping the service)."""
        if self.source is None or self.is_url:
            return len(self._keys or {})
        path = Path(self.source)
        if not path.is_file():
            raise KeysUnavailable(f"not found: {self.source} (set DEALFLOW_AUTH_JWKS to a JWKS file or an https:// URL)")
        self._keys = _usable(_parse(path.read_bytes(), self.source))
        if not self._keys:
            raise KeysUnavailable(f"{self.source} holds no key dealflow trusts (EC P-256, RSA or Ed25519 public keys)")
        return len(self._keys)

    async def verify(self, token: str) -> Caller:
        """The caller a bearer token names, or InvalidToken (KeysUnavailable: the keys could not be had at all)."""
        if not token or len(token) > MAX_TOKEN_CHARACTERS:
            raise InvalidToken(f"the token must be 1 to {MAX_TOKEN_CHARACTERS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"tokens are signed with {', '.join(ALGORITHMS)}, not {printable_claim(algorithm)}")
        key = await self._key(header.get("kid"))
        if key.algorithm_name != algorithm:
            raise InvalidToken(f"the token says {algorithm}, but its key is for {key.algorithm_name}")
        required = ["exp", "sub"] + (["iss"] if self.issuer else []) + (["aud"] if self.audience else [])
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer") from None
        except jwt.MissingRequiredClaimError as missing:
            raise InvalidToken(f"the token has no {missing.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.PyJWTError as other:
            raise InvalidToken(f"the token is invalid ({type(other).__name__})") from None
        return Caller(sub=_sub(claims.get("sub")), roles=_roles(claims.get("roles", [])), expires_at=float(claims["exp"]))

    async def _key(self, kid: Any) -> jwt.PyJWK:
        keys = await self._load(refresh=False)
        if kid is None:
            only = next(iter(keys.values())) if len(keys) == 1 else None
            if only is None:
                raise InvalidToken("the token names no key (kid) and more than one key is trusted")
            return only
        if not isinstance(kid, str):
            raise InvalidToken("the token's kid must be a string")
        if kid not in keys and self.source is not None:
            # The keys may have been rotated (the provider's, or the file's): look once more (rate-limited), then decide.
            keys = await self._load(refresh=True)
        if kid not in keys:
            raise InvalidToken("the token is signed with a key that is not trusted (unknown kid)")
        key = keys[kid]
        if key is None:
            raise InvalidToken("the token names a kid that two trusted keys share")
        return key

    async def _load(self, *, refresh: bool) -> dict[str | None, jwt.PyJWK | None]:
        # Keys held and no refresh asked: no waiting behind a fetch (a slow provider delays only unknown kids).
        if self._keys is not None and not refresh:
            return self._keys
        async with self._lock:
            now = time.monotonic()
            # The first look for a rotated key is at once; then at most one every few seconds, so a
            # stream of tokens naming unknown keys cannot make us hammer the identity provider. A load
            # that failed is tried again no more often either: meanwhile, no token can be checked.
            if self._keys is None:
                due = now - self._failed_at > REFRESH_AT_MOST_EVERY_SECONDS
            else:
                due = now - self._refreshed_at > REFRESH_AT_MOST_EVERY_SECONDS
                self._refreshed_at = now if due else self._refreshed_at
            if self.source is not None and due:
                try:
                    self._keys = _usable(await self._read(self.source))
                except KeysUnavailable as unavailable:
                    # Said in the log (where, and why); a caller is told only that it cannot be checked now.
                    # Keys fetched before stay trusted: a provider outage must not lock everyone out.
                    log.warning("cannot read the trusted keys", source=self.source, problem=str(unavailable))
                    self._failed_at = now
            if self._keys is None:
                raise KeysUnavailable("the keys tokens are verified with cannot be read now; try again shortly")
            return self._keys

    async def _read(self, source: str) -> Mapping[str, Any]:
        try:
            if self.is_url:
                async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                    return _parse(await self._fetch(source), source)
            return _parse(await asyncio.to_thread(Path(source).read_bytes), source)
        except (OSError, httpx.HTTPError, TimeoutError) as error:
            raise KeysUnavailable(f"cannot read the trusted keys at {source}: {type(error).__name__}") from None

    async def _fetch(self, url: str) -> bytes:
        """The JWKS document, at most MAX_JWKS_BYTES (a JWKS is a few KB), within FETCH_TIMEOUT_SECONDS in all."""
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, verify=self._verify, follow_redirects=False) as client:
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise KeysUnavailable(f"{url} sent more than {MAX_JWKS_BYTES} bytes: not a JWKS")
                return bytes(body)


def _parse(data: bytes, source: str) -> Mapping[str, Any]:
    try:
        jwks = json.loads(data)
    except ValueError:
        raise KeysUnavailable(f"{source} is not a JWKS (not JSON)") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise KeysUnavailable(f"{source} is not a JWKS (no \"keys\" list)")
    return jwks


def _usable(jwks: Mapping[str, Any]) -> dict[str | None, jwt.PyJWK | None]:
    """The trusted public keys of a JWKS by kid: asymmetric keys of the allowed algorithms only; a
    symmetric ('oct') key, a private key, or one for another algorithm is never trusted."""
    keys: dict[str | None, jwt.PyJWK] = {}
    for entry in jwks.get("keys", []):
        if not isinstance(entry, dict) or entry.get("kty") not in ("EC", "RSA", "OKP") or "d" in entry:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError:
            log.warning("skipping a key of the JWKS that cannot be read", kid=printable_claim(entry.get("kid")))
            continue
        if key.algorithm_name in ALGORITHMS:
            kid = entry.get("kid")
            if kid in keys:
                # Two keys under one kid (or two without one): neither can be told from the other, so a
                # token naming that kid (or none) is refused rather than checked against one at random.
                log.warning("two keys of the JWKS share a kid; tokens naming it are refused", kid=printable_claim(kid))
                keys[kid] = None
            else:
                keys[kid] = key
    return keys


def _sub(sub: Any) -> str:
    """The actor recorded on every event the caller causes: a name a person can read, bounded."""
    if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_SUB_CHARACTERS:
        raise InvalidToken(f"the token's sub must be a name of 1 to {MAX_SUB_CHARACTERS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Cf") for ch in sub):
        raise InvalidToken("the token's sub must not contain control or invisible characters")
    if sub.strip().casefold() == SERVICE_ACTOR:
        # The service's own name on the facts it records itself (walk-away conditions): no caller may act as it.
        raise InvalidToken(f"the token's sub must not be {SERVICE_ACTOR!r}, the service's own name")
    return sub.strip()


def _roles(roles: Any) -> frozenset[str]:
    if not isinstance(roles, list) or len(roles) > MAX_ROLES or not all(isinstance(r, str) and len(r) <= 50 for r in roles):
        raise InvalidToken(f"the token's roles claim must be a list of at most {MAX_ROLES} role names")
    return frozenset(roles)


def printable_claim(value: Any) -> str:
    """A value from an unverified token, safe to put in a message: short and printable."""
    text = str(value)[:20]
    return "".join(ch if ch.isprintable() else "?" for ch in text)


# -- the development key: `dealflow up` works out of the box, with real tokens ----------------


def dev_key(directory: Path, *, issuer: str | None = None, audience: str | None = None) -> TrustedKeys:
    """Trust the development key (Ed25519, under `directory`, made on first use); the same key signs `dealflow token`."""
    return TrustedKeys(jwks=dev_jwks(directory), issuer=issuer, audience=audience)


def dev_jwks(directory: Path) -> dict[str, Any]:
    """The development key's public half as a JWKS (what a service trusting it would serve)."""
    jwk = json.loads(OKPAlgorithm.to_jwk(_dev_private_key(directory).public_key()))
    return {"keys": [{**jwk, "kid": DEV_KEY_ID, "use": "sig", "alg": "EdDSA"}]}


def mint(
    directory: Path,
    *,
    sub: str,
    roles: list[str],
    ttl_seconds: int,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A token signed with the development key (made if it does not exist yet)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "iat": now, "nbf": now, "exp": now + ttl_seconds, "jti": uuid4().hex}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, _dev_private_key(directory), algorithm="EdDSA", headers={"kid": DEV_KEY_ID})


def _dev_private_key(directory: Path) -> Ed25519PrivateKey:
    """The key under `directory`, made once (two processes starting together agree on one)."""
    path = directory / DEV_KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_once(path, pem)
    data = path.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeysUnavailable(f"{path} is not an Ed25519 private key")
    return key
