"""Keys and encryption at rest.

One keyring holds:

- the **blind-index key** (HMAC-SHA256) that turns a normalised identifier into the subject's lookup key;
- the **data keys** (AES-256-GCM), each with an id, one of them current: new rows use the current key,
  old rows stay readable with theirs until re-encrypted;
- the **signing keys** (Ed25519), each with an id (the JWS ``kid``), one current; the previous ones stay
  published in the JWKS so seals made with them still verify.

The keyring comes from ``ONECERT_KEYRING_JSON`` or from a file (mode 0600) under ``ONECERT_HOME``. A
missing keyring is generated only in dev mode; placeholder keys are refused outside dev mode.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from materials_store.errors import ConfigurationError
from materials_store.settings import Settings

KEYRING_VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
#: How many retired signing keys stay published in the JWKS.
PUBLISHED_PREVIOUS_SIGNING_KEYS = 2
#: Fewer distinct byte values than this in 32 bytes never happens by chance (p < 1e-20).
_MIN_DISTINCT_BYTES = 8
#: Bytes a typed placeholder is made of: printable ASCII, whitespace and NUL padding.
_TYPED_BYTES = frozenset(range(0x20, 0x7F)) | frozenset(b"\0\t\n\r")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _now() -> str:
    # Microseconds: published_signing_keys orders keys by it, and rotations can come within a second.
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _new_id(prefix: str) -> str:
    return f"{prefix}-{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(4)}"


def _looks_like_placeholder(key: bytes) -> bool:
    """Low-variety bytes (all zeros, a repeated pattern) or typed text (``changeme`` padded out, a
    password, hex digits) are not keys: 32 random bytes are all printable with probability ~1e-14."""
    return len(set(key)) < _MIN_DISTINCT_BYTES or set(key) <= _TYPED_BYTES


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    created_at: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}


@dataclass(slots=True)
class Keyring:
    """The hub's secrets. Never logged; ``repr`` shows key ids only."""

    blind_index_key: bytes
    data_keys: dict[str, bytes]
    current_data_key_id: str
    signing_keys: dict[str, SigningKey] = field(default_factory=dict)
    current_signing_kid: str | None = None
    _aead_cache: dict[str, AESGCM] = field(default_factory=dict, repr=False)
    _blind_mac: hmac.HMAC | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"Keyring(data_keys={sorted(self.data_keys)}, current={self.current_data_key_id!r}, "
            f"signing={sorted(self.signing_keys)}, current_signing={self.current_signing_kid!r})"
        )

    # -- generation and rotation ------------------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        """A fresh keyring: one blind-index key, one data key, one signing key."""
        data_id = _new_id("dk")
        keyring = cls(
            blind_index_key=secrets.token_bytes(KEY_BYTES),
            data_keys={data_id: secrets.token_bytes(KEY_BYTES)},
            current_data_key_id=data_id,
        )
        keyring.rotate_signing_key()
        return keyring

    def rotate_data_key(self) -> str:
        """Make a new data key current; the old ones stay for reading. Returns the new key id."""
        key_id = _new_id("dk")
        self.data_keys[key_id] = secrets.token_bytes(KEY_BYTES)
        self.current_data_key_id = key_id
        return key_id

    def rotate_signing_key(self) -> str:
        """Make a new Ed25519 signing key current; the previous ones stay published. Returns its kid."""
        kid = _new_id("sk")
        self.signing_keys[kid] = SigningKey(kid, Ed25519PrivateKey.generate(), _now())
        self.current_signing_kid = kid
        return kid

    # -- blind index and AEAD ---------------------------------------------------------------

    def blind_index(self, normalised_identifier: str) -> str:
        """The subject's lookup key: hex HMAC-SHA256 of the normalised identifier."""
        if self._blind_mac is None:  # the keyed state, prepared once and copied per identifier
            self._blind_mac = hmac.new(self.blind_index_key, digestmod=hashlib.sha256)
        mac = self._blind_mac.copy()
        mac.update(normalised_identifier.encode("utf-8"))
        return mac.hexdigest()

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._aead_cache.get(key_id)
        if aead is None:
            try:
                aead = AESGCM(self.data_keys[key_id])
            except KeyError:
                raise ConfigurationError(
                    "a row is encrypted with a data key that is not in the keyring", key_id=key_id
                ) from None
            self._aead_cache[key_id] = aead
        return aead

    def encrypt(self, plaintext: bytes, *, aad: bytes = b"") -> tuple[str, bytes]:
        """Encrypt with the current data key. Returns ``(key_id, nonce + ciphertext + tag)``.

        ``aad`` binds the ciphertext to its row (for example the subject's blind index), so a
        ciphertext copied into another row does not decrypt.
        """
        nonce = secrets.token_bytes(NONCE_BYTES)
        key_id = self.current_data_key_id
        return key_id, nonce + self._aead(key_id).encrypt(nonce, plaintext, aad or None)

    def encrypt_many(self, plaintexts: Sequence[bytes], aads: Sequence[bytes]) -> tuple[str, list[bytes]]:
        """:meth:`encrypt` for a batch, with one draw of random bytes for all the nonces."""
        key_id = self.current_data_key_id
        encrypt = self._aead(key_id).encrypt
        nonces = secrets.token_bytes(NONCE_BYTES * len(plaintexts))
        blobs = []
        for start, plaintext, aad in zip(range(0, len(nonces), NONCE_BYTES), plaintexts, aads, strict=True):
            nonce = nonces[start : start + NONCE_BYTES]
            blobs.append(nonce + encrypt(nonce, plaintext, aad or None))
        return key_id, blobs

    def decrypt(self, key_id: str, blob: bytes, *, aad: bytes = b"") -> bytes:
        """Decrypt a blob made by :meth:`encrypt` with the key it names."""
        return self._aead(key_id).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad or None)

    # -- signing ----------------------------------------------------------------------------

    @property
    def current_signing_key(self) -> SigningKey:
        if self.current_signing_kid is None:
            raise ConfigurationError("the keyring has no signing key; run `onecert keys rotate --signing`")
        return self.signing_keys[self.current_signing_kid]

    def published_signing_keys(self) -> list[SigningKey]:
        """The current signing key and the most recent previous ones, newest first."""
        ordered = sorted(self.signing_keys.values(), key=lambda k: (k.created_at, k.kid), reverse=True)
        current = self.current_signing_key
        others = [k for k in ordered if k.kid != current.kid]
        return [current, *others[:PUBLISHED_PREVIOUS_SIGNING_KEYS]]

    # -- serialisation ----------------------------------------------------------------------

    def to_json(self) -> str:
        signing = {
            kid: {
                "private_pem": key.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode("ascii"),
                "created_at": key.created_at,
            }
            for kid, key in self.signing_keys.items()
        }
        document: dict[str, Any] = {
            "version": KEYRING_VERSION,
            "blind_index_key": _b64(self.blind_index_key),
            "data_keys": {kid: _b64(key) for kid, key in self.data_keys.items()},
            "current_data_key": self.current_data_key_id,
            "signing_keys": signing,
            "current_signing_key": self.current_signing_kid,
        }
        return json.dumps(document, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, allow_placeholders: bool = False) -> Keyring:
        """Parse a keyring document; refuses malformed, short or placeholder keys."""
        try:
            document = json.loads(text)
            if document.get("version", KEYRING_VERSION) != KEYRING_VERSION:
                raise ConfigurationError(
                    f"the keyring has version {document['version']!r}; this hub reads version {KEYRING_VERSION}"
                )
            blind = _unb64(document["blind_index_key"])
            data_keys = {kid: _unb64(key) for kid, key in document["data_keys"].items()}
            current = document["current_data_key"]
            signing: dict[str, SigningKey] = {}
            for kid, entry in (document.get("signing_keys") or {}).items():
                private = serialization.load_pem_private_key(entry["private_pem"].encode("ascii"), None)
                if not isinstance(private, Ed25519PrivateKey):
                    raise ConfigurationError("signing keys must be Ed25519", kid=kid)
                signing[kid] = SigningKey(kid, private, entry.get("created_at", ""))
            current_signing = document.get("current_signing_key")
        except ConfigurationError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigurationError(f"the keyring is malformed ({type(error).__name__})") from None
        if current not in data_keys:
            raise ConfigurationError("the keyring's current data key is not among its data keys")
        if current_signing is not None and current_signing not in signing:
            raise ConfigurationError("the keyring's current signing key is not among its signing keys")
        seeds = [
            (kid, key.private_key.private_bytes_raw()) for kid, key in signing.items()
        ]  # the 32-byte Ed25519 seed, which a copied example key would share with everyone
        for name, key in [("blind_index_key", blind), *data_keys.items(), *seeds]:
            if len(key) != KEY_BYTES:
                raise ConfigurationError(f"key {name} must be {KEY_BYTES} bytes", key_id=name)
            if not allow_placeholders and _looks_like_placeholder(key):
                raise ConfigurationError(
                    f"key {name} is a placeholder; generate real keys (or set ONECERT_DEV=1 for development)",
                    key_id=name,
                )
        return cls(blind, data_keys, current, signing, current_signing)

    def save(self, path: Path, *, overwrite: bool = True) -> None:
        """Write atomically and durably with mode 0600; a folder it creates is 0700.

        Args:
            path: the keyring file.
            overwrite: replace an existing file. When false, an existing file is left alone.

        Raises:
            FileExistsError: ``overwrite`` is false and the file exists (perhaps just written by
                another process starting at the same time).
        """
        try:
            path.parent.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            pass
        else:
            path.parent.chmod(0o700)  # mkdir's mode is filtered by the umask
        # mkstemp creates a new file 0600 (never reusing a stale, wider one), in the same folder so
        # that the rename is atomic; fsync before and after it, since a lost keyring loses every row.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # atomic and never replaces: the first writer wins
                os.unlink(tmp)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def load_keyring(settings: Settings, *, create: bool | None = None) -> Keyring:
    """The keyring for these settings: from ``ONECERT_KEYRING_JSON``, else the keyring file.

    Args:
        settings: where to look, and whether dev mode is on.
        create: generate and save a keyring when none exists. Defaults to dev mode.

    Raises:
        ConfigurationError: no keyring (outside dev mode), a malformed one, or placeholder keys.
    """
    if settings.keyring_json is not None:
        return Keyring.from_json(settings.keyring_json.get_secret_value(), allow_placeholders=settings.dev)
    path = settings.resolved_keyring_file
    if not path.exists() and (create if create is not None else settings.dev):
        keyring = Keyring.generate()
        try:
            # Never replace: hub workers starting together would each keep a different keyring.
            keyring.save(path, overwrite=False)
        except FileExistsError:
            pass  # another process made it first; read theirs below
        else:
            return keyring
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigurationError("the keyring file must not be readable by group or others (chmod 600)")
        return Keyring.from_json(path.read_text(encoding="utf-8"), allow_placeholders=settings.dev)
    raise ConfigurationError(
        "no keyring: run `onecert keys init` (or set ONECERT_DEV=1 to generate one for development)"
    )
