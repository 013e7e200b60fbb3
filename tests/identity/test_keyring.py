"""The keyring: generated in dev mode, refused when missing or fake outside it, rotated without loss."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from typer.testing import CliRunner

from hub.cli import app
from materials_store.crypto import Keyring, load_keyring
from materials_store.errors import ConfigurationError
from materials_store.settings import get_settings


def test_dev_mode_generates_a_private_keyring(settings_dev: None) -> None:
    keyring = load_keyring(get_settings())
    path = get_settings().resolved_keyring_file
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert load_keyring(get_settings()).blind_index("x") == keyring.blind_index("x")


def test_missing_keyring_is_refused_outside_dev_mode() -> None:
    os.environ["ONECERT_DEV"] = "0"
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="onecert keys init"):
        load_keyring(get_settings())


def test_group_readable_keyring_file_is_refused(settings_dev: None) -> None:
    load_keyring(get_settings())
    path = get_settings().resolved_keyring_file
    path.chmod(0o640)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keyring(get_settings())


@pytest.mark.parametrize("fake", [b"\0" * 32, b"changeme".ljust(32, b"\0")])
def test_placeholder_keys_are_refused_outside_dev_mode(fake: bytes) -> None:
    import base64

    document = json.loads(Keyring.generate().to_json())
    document["data_keys"][document["current_data_key"]] = base64.b64encode(fake).decode()
    text = json.dumps(document)
    with pytest.raises(ConfigurationError, match="placeholder"):
        Keyring.from_json(text)
    assert Keyring.from_json(text, allow_placeholders=True)


def test_environment_keyring_takes_precedence(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    os.environ["ONECERT_KEYRING_JSON"] = keyring.to_json()
    os.environ["ONECERT_DEV"] = "0"
    get_settings.cache_clear()
    assert load_keyring(get_settings()).blind_index("a") == keyring.blind_index("a")
    assert not get_settings().resolved_keyring_file.exists()


def test_data_key_rotation_and_aad_binding() -> None:
    keyring = Keyring.generate()
    old_id, old_blob = keyring.encrypt(b"payload", aad=b"row-1")
    new_id = keyring.rotate_data_key()
    again_id, _ = keyring.encrypt(b"payload", aad=b"row-1")
    assert again_id == new_id != old_id
    assert keyring.decrypt(old_id, old_blob, aad=b"row-1") == b"payload"
    with pytest.raises(InvalidTag):
        keyring.decrypt(old_id, old_blob, aad=b"row-2")


def test_signing_rotation_keeps_previous_keys_published() -> None:
    keyring = Keyring.generate()
    first = keyring.current_signing_kid
    second = keyring.rotate_signing_key()
    published = [key.kid for key in keyring.published_signing_keys()]
    assert published[0] == second
    assert first in published
    jwk = keyring.current_signing_key.public_jwk()
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["kid"]) == ("OKP", "Ed25519", "EdDSA", second)
    restored = Keyring.from_json(keyring.to_json())
    assert restored.current_signing_kid == second


def test_repr_shows_no_key_material() -> None:
    keyring = Keyring.generate()
    text = repr(keyring)
    assert keyring.blind_index_key.hex() not in text
    assert "dk-" in text


def test_keys_commands(settings_dev: None) -> None:
    runner = CliRunner()
    os.environ["ONECERT_DEV"] = "0"
    get_settings.cache_clear()
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    assert runner.invoke(app, ["keys", "init"]).exit_code == 1  # never overwrites a keyring
    before = load_keyring(get_settings())
    signing = runner.invoke(app, ["keys", "rotate", "--signing"])
    assert signing.exit_code == 0
    after = load_keyring(get_settings())
    assert after.current_signing_kid == signing.output.strip() != before.current_signing_kid
    assert after.current_data_key_id == before.current_data_key_id


@pytest.fixture
def settings_dev() -> None:
    os.environ["ONECERT_DEV"] = "1"
    get_settings.cache_clear()
