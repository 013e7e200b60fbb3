"""The keyring: generated in dev mode, refused when missing or fake outside it, rotated without loss."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from typer.testing import CliRunner

from hub.cli import app
from materials_store.crypto import Keyring, load_keyring
from materials_store.errors import ConfigurationError
from materials_store.settings import Settings, get_settings


def use(**env: str) -> Settings:
    """Set ONECERT_* variables (on top of the autouse fixture's fresh home) and return new settings."""
    for name, value in env.items():
        os.environ[f"ONECERT_{name.upper()}"] = value
    get_settings.cache_clear()
    return get_settings()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def with_key(keyring: Keyring, which: str, key: bytes) -> str:
    """The keyring's JSON with one key ("blind" or "data") replaced."""
    document = json.loads(keyring.to_json())
    encoded = base64.b64encode(key).decode()
    if which == "blind":
        document["blind_index_key"] = encoded
    else:
        document["data_keys"][document["current_data_key"]] = encoded
    return json.dumps(document)


def secrets_of(keyring: Keyring) -> list[str]:
    """Every piece of key material, in the encodings it could leak in."""
    raw = [keyring.blind_index_key, *keyring.data_keys.values()]
    raw += [key.private_key.private_bytes_raw() for key in keyring.signing_keys.values()]
    return [text for key in raw for text in (key.hex(), base64.b64encode(key).decode(), repr(key))]


@pytest.fixture
def restore_umask() -> Iterator[None]:
    saved = os.umask(0o022)
    os.umask(saved)
    yield
    os.umask(saved)


# -- where the keyring comes from ---------------------------------------------------------------------


def test_dev_mode_generates_a_private_keyring_on_first_use(restore_umask: None) -> None:
    settings = use(dev="1")
    path = settings.resolved_keyring_file
    assert not path.exists()
    os.umask(0)  # the file and folder modes must not depend on the umask
    keyring = load_keyring(settings)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    again = load_keyring(settings)
    assert again.blind_index("x") == keyring.blind_index("x")
    assert again.data_keys == keyring.data_keys


def test_missing_keyring_is_refused_outside_dev_mode() -> None:
    settings = use(dev="0")
    with pytest.raises(ConfigurationError, match="run `onecert keys init`") as caught:
        load_keyring(settings)
    assert "ONECERT_DEV=1" in caught.value.detail
    assert not settings.resolved_keyring_file.exists()


def test_dev_mode_is_off_unless_set() -> None:
    del os.environ["ONECERT_DEV"]
    get_settings.cache_clear()
    assert get_settings().dev is False
    with pytest.raises(ConfigurationError):
        load_keyring(get_settings())


def test_a_keyring_written_meanwhile_by_another_process_is_kept() -> None:
    # Two hub workers starting together in dev mode must end up with the same keyring.
    settings = use(dev="1")
    first = Keyring.generate()
    first.save(settings.resolved_keyring_file, overwrite=False)
    with pytest.raises(FileExistsError):
        Keyring.generate().save(settings.resolved_keyring_file, overwrite=False)
    assert load_keyring(settings).data_keys == first.data_keys
    assert len(list(settings.resolved_keyring_file.parent.iterdir())) == 1


@pytest.mark.parametrize("readable", [0o640, 0o604, 0o660])
def test_group_or_world_readable_keyring_file_is_refused(readable: int) -> None:
    settings = use(dev="1")
    load_keyring(settings)
    settings.resolved_keyring_file.chmod(readable)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keyring(settings)


def test_environment_keyring_takes_precedence_over_the_file() -> None:
    settings = use(dev="1")
    on_disk = load_keyring(settings)
    injected = Keyring.generate()
    settings = use(keyring_json=injected.to_json(), dev="0")
    loaded = load_keyring(settings)
    assert loaded.blind_index("a") == injected.blind_index("a") != on_disk.blind_index("a")
    assert loaded.data_keys == injected.data_keys


def test_environment_keyring_needs_no_file() -> None:
    injected = Keyring.generate()
    settings = use(keyring_json=injected.to_json(), dev="0")
    assert load_keyring(settings).current_data_key_id == injected.current_data_key_id
    assert not settings.resolved_keyring_file.exists()


# -- placeholders and malformed keyrings --------------------------------------------------------------

PLACEHOLDERS = {
    "zeros": b"\0" * 32,
    "changeme-nul-padded": b"changeme".ljust(32, b"\0"),
    "changeme-space-padded": b"changeme".ljust(32),
    "changeme-repeated": b"changeme" * 4,
    "hex-text": b"0123456789abcdef" * 2,
    "password": b"Correct-Horse-Battery-Staple-42!",
    "two-byte-pattern": b"\xde\xad" * 16,
}


@pytest.mark.parametrize("which", ["blind", "data"])
@pytest.mark.parametrize("name", list(PLACEHOLDERS))
def test_placeholder_keys_are_refused_outside_dev_mode_and_allowed_in_it(which: str, name: str) -> None:
    text = with_key(Keyring.generate(), which, PLACEHOLDERS[name])
    with pytest.raises(ConfigurationError, match="placeholder"):
        load_keyring(use(keyring_json=text, dev="0"))
    assert load_keyring(use(keyring_json=text, dev="1"))


def test_placeholder_keys_in_the_file_are_refused_outside_dev_mode() -> None:
    settings = use(dev="0")
    path = settings.resolved_keyring_file
    path.parent.mkdir(mode=0o700)
    path.write_text(with_key(Keyring.generate(), "data", PLACEHOLDERS["zeros"]), encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="placeholder"):
        load_keyring(settings)
    allowed = load_keyring(use(dev="1"))
    assert allowed.data_keys[allowed.current_data_key_id] == b"\0" * 32


def test_a_signing_key_made_from_a_placeholder_seed_is_refused() -> None:
    document = json.loads(Keyring.generate().to_json())
    example = Ed25519PrivateKey.from_private_bytes(b"\0" * 32)
    pem = example.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    document["signing_keys"][document["current_signing_key"]]["private_pem"] = pem
    with pytest.raises(ConfigurationError, match="placeholder"):
        Keyring.from_json(json.dumps(document))
    assert Keyring.from_json(json.dumps(document), allow_placeholders=True)


def test_generated_keys_are_never_taken_for_placeholders() -> None:
    for _ in range(50):
        assert Keyring.from_json(Keyring.generate().to_json())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.pop("blind_index_key"),
        lambda d: d.update(blind_index_key="not base64!"),
        lambda d: d.update(blind_index_key=base64.b64encode(b"short").decode()),
        lambda d: d.update(current_data_key="dk-missing"),
        lambda d: d.update(current_signing_key="sk-missing"),
        lambda d: d.update(version=2),
        lambda d: d["signing_keys"][d["current_signing_key"]].update(private_pem="garbage"),
    ],
)
def test_malformed_keyrings_are_refused_without_showing_keys(
    mangle: Callable[[dict[str, Any]], object],
) -> None:
    keyring = Keyring.generate()
    document = json.loads(keyring.to_json())
    mangle(document)
    with pytest.raises(ConfigurationError) as caught:
        Keyring.from_json(json.dumps(document), allow_placeholders=True)
    assert all(secret not in str(caught.value) for secret in secrets_of(keyring))


def test_repr_shows_no_key_material() -> None:
    keyring = Keyring.generate()
    keyring.rotate_data_key()
    keyring.rotate_signing_key()
    for text in [repr(keyring), str(keyring), f"{keyring!r}"]:
        assert all(secret not in text for secret in secrets_of(keyring))
        assert keyring.current_data_key_id in text
    assert all(secret not in repr(keyring.current_signing_key) for secret in secrets_of(keyring))


# -- data keys ----------------------------------------------------------------------------------------


def test_data_key_rotation_keeps_old_rows_readable() -> None:
    settings = use(dev="1")
    keyring = load_keyring(settings)
    old_id, old_blob = keyring.encrypt(b"payload", aad=b"row-1")
    new_id = keyring.rotate_data_key()
    keyring.save(settings.resolved_keyring_file)

    reloaded = load_keyring(settings)
    assert reloaded.current_data_key_id == new_id != old_id
    assert set(reloaded.data_keys) == {old_id, new_id}
    assert reloaded.decrypt(old_id, old_blob, aad=b"row-1") == b"payload"
    again_id, again_blob = reloaded.encrypt(b"payload", aad=b"row-1")
    assert again_id == new_id
    assert reloaded.decrypt(new_id, again_blob, aad=b"row-1") == b"payload"
    with pytest.raises(InvalidTag):  # a blob opens only with the key it names
        reloaded.decrypt(old_id, again_blob, aad=b"row-1")


def test_ciphertext_is_bound_to_its_row() -> None:
    keyring = Keyring.generate()
    key_id, blob = keyring.encrypt(b"payload", aad=b"row-1")
    for aad in [b"row-2", b""]:
        with pytest.raises(InvalidTag):
            keyring.decrypt(key_id, blob, aad=aad)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(InvalidTag):
        keyring.decrypt(key_id, tampered, aad=b"row-1")
    # A fresh nonce each time: the same plaintext never gives the same blob.
    assert keyring.encrypt(b"payload", aad=b"row-1")[1] != blob


def test_a_row_under_an_unknown_key_is_a_configuration_error() -> None:
    keyring = Keyring.generate()
    _, blob = keyring.encrypt(b"payload")
    with pytest.raises(ConfigurationError, match="not in the keyring"):
        Keyring.generate().decrypt("dk-20260101-00000000", blob)


def test_blind_index_is_keyed() -> None:
    first, second = Keyring.generate(), Keyring.generate()
    value = "11010519491231002X"
    assert first.blind_index(value) == first.blind_index(value)
    assert first.blind_index(value) != second.blind_index(value)
    assert len(first.blind_index(value)) == 64
    assert value not in first.blind_index(value)


# -- signing keys -------------------------------------------------------------------------------------


def public_key_of(jwk: dict[str, str]) -> Ed25519PublicKey:
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    assert len(raw) == 32
    return Ed25519PublicKey.from_public_bytes(raw)


def test_signing_rotation_keeps_previous_keys_published() -> None:
    keyring = Keyring.generate()
    kids = [keyring.current_signing_kid]
    kids += [keyring.rotate_signing_key() for _ in range(3)]  # within the same second

    published = [key.kid for key in Keyring.from_json(keyring.to_json()).published_signing_keys()]
    assert published == [kids[3], kids[2], kids[1]]  # current first, then the two most recent
    assert Keyring.from_json(keyring.to_json()).current_signing_kid == kids[3]

    # A seal made with a retired, still published key verifies with its published JWK.
    keyring = Keyring.generate()
    first = keyring.current_signing_key
    signature = first.private_key.sign(b"seal")
    keyring.rotate_signing_key()
    jwks = {key.kid: key.public_jwk() for key in keyring.published_signing_keys()}
    public_key_of(jwks[first.kid]).verify(signature, b"seal")
    with pytest.raises(InvalidSignature):
        public_key_of(jwks[keyring.current_signing_kid]).verify(signature, b"seal")


def test_public_jwk_shape() -> None:
    key = Keyring.generate().current_signing_key
    jwk = key.public_jwk()
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": jwk["x"],
        "kid": key.kid,
        "alg": "EdDSA",
        "use": "sig",
    }
    assert "d" not in jwk  # never the private part
    assert "=" not in jwk["x"]  # base64url without padding (RFC 8037)
    public_key_of(jwk).verify(key.private_key.sign(b"m"), b"m")


# -- onecert keys -------------------------------------------------------------------------------------


def test_keys_init_creates_a_private_keyring_once() -> None:
    settings = use(dev="0")
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "init"])
    assert created.exit_code == 0, created.output
    path = settings.resolved_keyring_file
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    before = path.read_bytes()
    again = runner.invoke(app, ["keys", "init"])
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert path.read_bytes() == before  # never overwrites a keyring


def test_keys_rotate_makes_a_new_data_key_current() -> None:
    settings = use(dev="0")
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    before = load_keyring(settings)
    key_id, blob = before.encrypt(b"old row", aad=b"r")

    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    after = load_keyring(settings)
    assert after.current_data_key_id == rotated.stdout.strip() != before.current_data_key_id
    assert after.decrypt(key_id, blob, aad=b"r") == b"old row"
    assert after.encrypt(b"new row")[0] == after.current_data_key_id
    assert after.current_signing_kid == before.current_signing_kid
    assert mode(settings.resolved_keyring_file) == 0o600


def test_keys_rotate_signing() -> None:
    settings = use(dev="0")
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    before = load_keyring(settings)
    rotated = runner.invoke(app, ["keys", "rotate", "--signing"])
    assert rotated.exit_code == 0, rotated.output
    after = load_keyring(settings)
    assert after.current_signing_kid == rotated.stdout.strip() != before.current_signing_kid
    assert before.current_signing_kid in [key.kid for key in after.published_signing_keys()]
    assert after.current_data_key_id == before.current_data_key_id


def test_keys_rotate_without_a_keyring_says_what_to_do() -> None:
    use(dev="0")
    result = CliRunner().invoke(app, ["keys", "rotate"])
    assert result.exit_code == 2
    assert result.stderr.startswith("configuration error: no keyring: run `onecert keys init`")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["keys", "init"], ["keys", "rotate"], ["keys", "rotate", "--signing"]])
def test_keys_commands_leave_an_environment_keyring_alone(command: list[str]) -> None:
    settings = use(keyring_json=Keyring.generate().to_json(), dev="0")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert "ONECERT_KEYRING_JSON" in result.stderr
    assert not settings.resolved_keyring_file.exists()
