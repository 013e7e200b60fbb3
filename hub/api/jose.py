"""The hub's JOSE: client authentication by signed assertion (RFC 7523 ``private_key_jwt``) and the
short-lived access tokens the hub issues. Algorithms are pinned: a client signs with EdDSA (Ed25519) or
ES256 (P-256), whichever its registered key is; the hub signs with EdDSA. ``none``, HS* and RS* are
refused, so no key-confusion trick can pass."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.api.problems import InvalidClient, Unauthorized
from materials_store.crypto import Keyring, SigningKey
from materials_store.models import Client, UsedAssertion
from materials_store.settings import Settings
from materials_store.store import get_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 30
ACCESS_AUDIENCE = "onecert-api"
SCOPES = {
    "window": ("lookup", "read"),
    "department": ("push", "revoke"),
    "steward": ("steward", "usage"),
    "citizen": ("usage:self",),
}
REQUIRED_ASSERTION_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti"]
#: Verified access tokens remembered per process (a few MB at most).
VERIFIED_TOKENS_KEPT = 10_000


def key_algorithm(public_key_pem: str) -> tuple[Any, str]:
    """The client's public key and the one algorithm it may sign with."""
    key = load_pem_public_key(public_key_pem.encode("ascii"))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise InvalidClient("the client's registered key is not Ed25519 or P-256")


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


class TokenService:
    """Authenticates clients and issues and verifies the hub's access tokens."""

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self.settings = settings
        self.keyring = keyring
        self.issuer = settings.public_url.rstrip("/")
        self.token_endpoint = f"{self.issuer}/v1/oauth/token"
        self._public_keys = {key.kid: key.public_key for key in keyring.published_signing_keys()}
        #: Access tokens already verified: token -> (expiry, claims).
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}

    def authenticate_client(self, session: Session, assertion: str) -> Client:
        """Verify a client assertion and consume its ``jti``. Does not commit.

        Raises:
            InvalidClient: malformed, unknown or disabled client, wrong algorithm or key, wrong audience,
                expired or too long-lived, or replayed.
        """
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidClient("the client assertion is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ("EdDSA", "ES256"):
            raise InvalidClient("client assertions are signed with EdDSA or ES256")
        client_id = unverified.get("iss")
        client = get_client(session, client_id=client_id) if isinstance(client_id, str) else None
        if client is None or client.status != "active":
            raise InvalidClient("unknown or disabled client")
        key, expected = key_algorithm(client.public_key_pem)
        if algorithm != expected:
            raise InvalidClient("the assertion's algorithm does not match the client's registered key")
        try:
            claims = jwt.decode(
                assertion,
                key=key,
                algorithms=[expected],
                audience=self.token_endpoint,
                issuer=client.id,
                leeway=LEEWAY,
                options={"require": REQUIRED_ASSERTION_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidClient("the client assertion has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidClient("the client assertion is not addressed to this token endpoint") from None
        except jwt.PyJWTError:
            raise InvalidClient("the client assertion's signature or claims are invalid") from None
        if claims["sub"] != client.id:
            raise InvalidClient("the assertion's subject must be the client itself")
        now = dt.datetime.now(dt.UTC)
        expires = dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
        if expires - now > dt.timedelta(seconds=MAX_ASSERTION_LIFETIME + LEEWAY):
            raise InvalidClient("a client assertion must expire within 5 minutes")
        jti = str(claims["jti"])
        if not 8 <= len(jti) <= 128:
            raise InvalidClient("the assertion's jti must be 8 to 128 characters")
        session.execute(
            delete(UsedAssertion).where(UsedAssertion.expires_at < now - dt.timedelta(seconds=LEEWAY))
        )
        session.add(UsedAssertion(jti=f"{client.id}:{jti}"[:128], client_id=client.id, expires_at=expires))
        try:
            session.flush()
        except IntegrityError:
            raise InvalidClient("the client assertion was already used") from None
        return client

    def issue(self, client: Client) -> AccessToken:
        """A short-lived access token for the client, signed by the hub's current key."""
        signing = self.keyring.current_signing_key
        now = dt.datetime.now(dt.UTC)
        ttl = self.settings.token_ttl_seconds
        claims = {
            "iss": self.issuer,
            "sub": client.id,
            "aud": ACCESS_AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + dt.timedelta(seconds=ttl),
            "jti": secrets.token_urlsafe(16),
            "kind": client.kind,
            "scope": " ".join(SCOPES[client.kind]),
        }
        token = jwt.encode(claims, signing.private_key, algorithm="EdDSA", headers={"kid": signing.kid})
        return AccessToken(token, ttl)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a hub access token. Raises Unauthorized for anything else.

        A token that verified once is remembered until it expires: a window sends the same token with
        every request, and checking its signature each time would cost more than a lookup's queries.
        """
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[0]:
                return known[1]
            self._verified.pop(token, None)
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            now = time.time()
            self._verified = {t: entry for t, entry in self._verified.items() if entry[0] > now}
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.clear()
        self._verified[token] = (float(claims["exp"]), claims)
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the access token is not a well-formed JWT") from None
        key = self._public_keys.get(str(header.get("kid")))
        if header.get("alg") != "EdDSA" or key is None:
            raise Unauthorized("the access token was not issued by this hub")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["EdDSA"],
                audience=ACCESS_AUDIENCE,
                issuer=self.issuer,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "kind", "scope"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the access token is invalid") from None
        return claims


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def detached_jws(body: bytes, key: SigningKey) -> str:
    """A compact JWS over ``body`` with the payload detached (RFC 7515 Appendix F): ``protected..signature``.

    The signature covers ``BASE64URL(protected) || "." || BASE64URL(body)``; a client verifies it with any
    JOSE library by putting the exact body bytes back in the middle.
    """
    protected = _b64url(json.dumps({"alg": "EdDSA", "kid": key.kid}, separators=(",", ":")).encode())
    signing_input = f"{protected}.{_b64url(body)}".encode("ascii")
    return f"{protected}..{_b64url(key.private_key.sign(signing_input))}"


def seal(document: bytes, key: SigningKey) -> str:
    """The hub's seal: a compact JWS (EdDSA) whose payload is the material's canonical JSON (RFC 8785).
    It verifies offline with the JWKS, and the payload is the material itself."""
    protected = _b64url(json.dumps({"alg": "EdDSA", "kid": key.kid, "typ": "onecert-seal+json"},
                                   separators=(",", ":")).encode())  # fmt: skip
    signing_input = f"{protected}.{_b64url(document)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{_b64url(key.private_key.sign(signing_input))}"


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_seal(token: str, public_keys: dict[str, ed25519.Ed25519PublicKey]) -> bytes:
    """The sealed document's bytes, if the seal is the hub's. Raises ValueError saying why not."""
    try:
        protected, payload, signature = token.split(".")
        header = json.loads(_unb64url(protected))
    except ValueError:
        raise ValueError("the seal is not a compact JWS") from None
    if header.get("alg") != "EdDSA":
        raise ValueError("the seal must be signed with EdDSA")
    key = public_keys.get(str(header.get("kid")))
    if key is None:
        raise ValueError("the seal's key is not among the hub's published keys")
    try:
        key.verify(_unb64url(signature), f"{protected}.{payload}".encode("ascii"))
    except Exception:  # noqa: BLE001 - cryptography raises InvalidSignature; any failure means invalid
        raise ValueError("the seal's signature does not verify") from None
    return _unb64url(payload)


def jwks_public_keys(jwks: dict[str, Any]) -> dict[str, ed25519.Ed25519PublicKey]:
    """Ed25519 public keys by kid from a JWKS document."""
    keys = {}
    for jwk in jwks.get("keys", []):
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            keys[str(jwk["kid"])] = ed25519.Ed25519PublicKey.from_public_bytes(_unb64url(jwk["x"]))
    return keys
