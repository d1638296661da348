"""Signing keys: every identity has one, its key file keeps it, earlier key
files are upgraded to it, and trust learns a peer's from a pin or a CA."""

from __future__ import annotations

import errno
import os
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from handshake import X25519
from keystore import (
    Argon2idCost,
    DuplicatePeerError,
    Identity,
    Keystore,
    KeystoreCorruptError,
    MalformedKeyError,
    TrustStore,
    UpgradeRequiredError,
    WrongPassphraseError,
    armor_certificate,
    decode_public_token,
    encode_key,
    encode_public_token,
    sign_certificate,
)
from keystore.layout import Layout
from keystore.sealing import seal_secret
from tests.test_keystore import EARLIER_KEY_FILE, EARLIER_PASSPHRASE, snapshot

YEAR = 365 * 86_400
PASSPHRASE = "correct horse"
# The cheapest cost the format allows, for the key files written by hand here.
CHEAP = Argon2idCost(1, 8192)


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    return Keystore.open(tmp_path / "home", kdf=Argon2idCost.INTERACTIVE)


def key_file(store: Keystore, name: str) -> Path:
    return store.path / "identities" / f"{name}.key"


def header(path: Path, key: str) -> str | None:
    prefix = f"{key}: "
    lines = path.read_text().splitlines()
    return next((line.removeprefix(prefix) for line in lines if line.startswith(prefix)), None)


def write_earlier_key_file(store: Keystore, name: str, passphrase: str | None) -> bytes:
    """An identity key file as releases before signing keys wrote it: the
    X25519 key alone, under a Name and a Public-Key header. Returns the key."""
    keypair = X25519.generate_keypair()
    sealed = seal_secret(
        "IDENTITY KEY",
        keypair.private_bytes(),
        {"Name": name, "Public-Key": encode_key(keypair.public)},
        None if passphrase is None else passphrase.encode(),
        CHEAP,
    )
    path = key_file(store, name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(sealed)
    path.chmod(0o600)
    return keypair.public


# -- a new identity's signing key ---------------------------------------------------------


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None], ids=["encrypted", "unencrypted"])
def test_a_new_identity_has_a_signing_key_that_survives_save_and_load(
    store: Keystore, passphrase: str | None
) -> None:
    created = store.new_identity("api", passphrase=passphrase)
    assert created.signing_key is not None
    assert created.signing_public_key is not None
    assert len(created.signing_public_key) == 32
    loaded = store.identity("api", passphrase=passphrase)
    assert loaded.signing_key is not None
    assert loaded.signing_public_key == created.signing_public_key
    assert loaded.signing_key.private_bytes_raw() == created.signing_key.private_bytes_raw()
    assert loaded.private_bytes() == created.private_bytes()
    assert store.signing_public_key("api") == created.signing_public_key
    assert header(key_file(store, "api"), "Signing-Key") == encode_key(created.signing_public_key)
    message = b"sealed by api"
    created.signing_key.public_key().verify(loaded.signing_key.sign(message), message)


def test_the_signing_key_is_never_in_a_repr_or_the_file_in_clear(store: Keystore) -> None:
    created = store.new_identity("api", passphrase=PASSPHRASE)
    assert created.signing_key is not None
    seed = created.signing_key.private_bytes_raw()
    assert encode_key(seed) not in key_file(store, "api").read_text()
    for text in (repr(created), str(created)):
        assert encode_key(seed) not in text
        assert seed.hex() not in text


def test_an_identity_built_from_a_static_key_alone_has_no_signing_key() -> None:
    identity = Identity.from_private_bytes(bytes(range(32)), "bench")
    assert identity.signing_key is None
    assert identity.signing_public_key is None
    seed = bytes(range(32, 64))
    signing = Identity.from_private_bytes(bytes(range(32)), signing_key=memoryview(seed))
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert signing.signing_public_key == expected
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.from_private_bytes(bytes(32), signing_key=bytes(31))
    with pytest.raises(TypeError, match="Ed25519PrivateKey"):
        Identity(X25519.generate_keypair(), signing_key=seed)  # type: ignore[arg-type]


# -- the key file's Signing-Key header ----------------------------------------------------


def edit_signing_header(path: Path, value: str) -> None:
    lines = path.read_text().splitlines()
    edited = [
        f"Signing-Key: {value}" if line.startswith("Signing-Key:") else line for line in lines
    ]
    path.write_text("\n".join(edited) + "\n")


def test_an_edited_signing_key_header_fails_to_decrypt(store: Keystore) -> None:
    store.new_identity("api", passphrase=PASSPHRASE)
    edit_signing_header(key_file(store, "api"), encode_key(os.urandom(32)))
    before = snapshot(store.path)
    with pytest.raises(WrongPassphraseError, match="or the file was altered"):
        store.identity("api", passphrase=PASSPHRASE)
    assert snapshot(store.path) == before


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (encode_key(os.urandom(32)), "altered: its signing key does not match"),
        ("not base64!", "altered: its signing key does not match"),
        ("", "malformed header line"),
    ],
)
def test_an_edited_signing_key_header_of_an_unencrypted_file_is_refused(
    store: Keystore, value: str, message: str
) -> None:
    store.new_identity("svc", passphrase=None)
    edit_signing_header(key_file(store, "svc"), value)
    before = snapshot(store.path)
    with pytest.raises(KeystoreCorruptError, match=message):
        store.identity("svc")
    assert snapshot(store.path) == before


def test_removing_the_signing_key_header_is_refused(store: Keystore) -> None:
    store.new_identity("svc", passphrase=None)
    store.new_identity("api", passphrase=PASSPHRASE)
    for name in ("svc", "api"):
        path = key_file(store, name)
        lines = path.read_text().splitlines()
        path.write_text("\n".join(x for x in lines if not x.startswith("Signing-Key:")) + "\n")
    before = snapshot(store.path)
    # Unencrypted, the body still holds two keys where the headers promise one.
    with pytest.raises(KeystoreCorruptError, match="private keys are not 32 bytes"):
        store.identity("svc")
    with pytest.raises(WrongPassphraseError, match="or the file was altered"):
        store.identity("api", passphrase=PASSPHRASE)
    assert snapshot(store.path) == before


def test_a_signing_key_header_added_to_an_earlier_file_is_refused(store: Keystore) -> None:
    write_earlier_key_file(store, "old", None)
    path = key_file(store, "old")
    text = path.read_text().replace(
        "Encryption:", f"Signing-Key: {encode_key(bytes(32))}\nEncryption:"
    )
    path.write_text(text)
    with pytest.raises(KeystoreCorruptError, match="private keys are not 64 bytes"):
        store.identity("old")


# -- key files of the earlier format ------------------------------------------------------


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None], ids=["encrypted", "unencrypted"])
def test_an_earlier_key_file_is_upgraded_when_the_keystore_loads_it(
    store: Keystore, passphrase: str | None
) -> None:
    public = write_earlier_key_file(store, "old", passphrase)
    path = key_file(store, "old")
    assert store.signing_public_key("old") is None
    assert store.public_key("old") == public
    loaded = store.identity("old", passphrase=passphrase)
    assert loaded.public_key == public  # the X25519 key, and so every pin of it, is unchanged
    assert loaded.signing_public_key is not None
    assert store.signing_public_key("old") == loaded.signing_public_key
    assert header(path, "Signing-Key") == encode_key(loaded.signing_public_key)
    # Resealed as it was: the same passphrase, at the cost the file recorded,
    # not this keystore's.
    assert store.is_encrypted("old") == (passphrase is not None)
    if passphrase is not None:
        assert header(path, "Argon2id") == "ops=1,mem=8192"
    again = store.identity("old", passphrase=passphrase)
    assert again.signing_public_key == loaded.signing_public_key
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_key_file_written_by_an_earlier_release_is_upgraded_in_place(store: Keystore) -> None:
    path = key_file(store, "old")
    path.parent.mkdir(mode=0o700)
    path.write_text(EARLIER_KEY_FILE)
    path.chmod(0o600)
    assert store.upgrade_identity("old", passphrase=EARLIER_PASSPHRASE) is True
    assert header(path, "Public-Key") == "fjBXtI5ltRY6RtfnBzqNew6Sw/AIEBZbpg0i0mlnYRM="
    assert header(path, "Argon2id") == "ops=2,mem=67108864"
    loaded = store.identity("old", passphrase=EARLIER_PASSPHRASE)
    assert encode_key(loaded.public_key) == "fjBXtI5ltRY6RtfnBzqNew6Sw/AIEBZbpg0i0mlnYRM="
    assert loaded.signing_public_key == store.signing_public_key("old")
    before = snapshot(store.path)
    assert store.upgrade_identity("old") is False  # nothing to do: no passphrase needed
    assert snapshot(store.path) == before


def test_a_wrong_passphrase_upgrades_nothing(store: Keystore) -> None:
    write_earlier_key_file(store, "old", PASSPHRASE)
    before = snapshot(store.path)
    with pytest.raises(WrongPassphraseError):
        store.upgrade_identity("old", passphrase="battery staple")
    with pytest.raises(WrongPassphraseError):
        store.identity("old", passphrase="battery staple")
    assert snapshot(store.path) == before


def read_only_file_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every open for writing fails as on a file system mounted read-only
    (the suite runs as root too, whom file modes do not stop)."""
    real_open = os.open

    def refusing(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing)


def test_an_earlier_key_file_in_a_read_only_keystore_is_a_typed_error(
    store: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_earlier_key_file(store, "old", None)
    (store.path / ".lock").touch(mode=0o600)
    before = snapshot(store.path)
    read_only_file_system(monkeypatch)
    with pytest.raises(UpgradeRequiredError, match="run 'securesess keys upgrade old'") as caught:
        store.identity("old")
    assert "Read-only file system" in str(caught.value)
    monkeypatch.undo()
    assert snapshot(store.path) == before
    assert store.signing_public_key("old") is None
    # What can be read without writing still can.
    assert len(store.public_key("old")) == 32


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the file modes say")
def test_an_earlier_key_file_in_a_keystore_this_user_cannot_write_is_a_typed_error(
    store: Keystore,
) -> None:
    write_earlier_key_file(store, "old", None)
    (store.path / ".lock").touch(mode=0o600)
    directory = store.path / "identities"
    directory.chmod(0o500)
    try:
        with pytest.raises(UpgradeRequiredError, match="keys upgrade old"):
            store.identity("old")
    finally:
        directory.chmod(0o700)
    assert store.signing_public_key("old") is None


def test_an_upgrade_that_another_process_made_first_is_the_one_used(
    store: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_earlier_key_file(store, "old", PASSPHRASE)
    other = Keystore.open(store.path, kdf=Argon2idCost.INTERACTIVE)
    real_writing = Layout.writing
    raced: list[bool] = []

    def racing(self: Layout) -> AbstractContextManager[None]:
        # Between this load's reading the file and its taking the lock,
        # another process upgrades the same file.
        if not raced:
            raced.append(True)
            other.upgrade_identity("old", passphrase=PASSPHRASE)
        return real_writing(self)

    monkeypatch.setattr(Layout, "writing", racing)
    loaded = store.identity("old", passphrase=PASSPHRASE)
    assert raced
    assert loaded.signing_public_key is not None
    assert loaded.signing_public_key == store.signing_public_key("old")


def test_changing_the_passphrase_of_an_earlier_key_file_upgrades_it(store: Keystore) -> None:
    public = write_earlier_key_file(store, "old", PASSPHRASE)
    store.change_passphrase("old", old=PASSPHRASE, new="new one")
    loaded = store.identity("old", passphrase="new one")
    assert loaded.public_key == public
    assert loaded.signing_public_key == store.signing_public_key("old") is not None


def test_rotating_an_earlier_identity_retires_its_file_as_it_was(store: Keystore) -> None:
    write_earlier_key_file(store, "old", None)
    earlier = key_file(store, "old").read_bytes()
    rotated = store.rotate_identity("old", passphrase=None)
    assert rotated.signing_public_key == store.signing_public_key("old") is not None
    (retired,) = (store.path / "identities" / "retired").glob("*.key")
    assert retired.read_bytes() == earlier


def test_an_earlier_identity_keeps_its_version_1_certificate_through_the_upgrade(
    store: Keystore,
) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    public = write_earlier_key_file(store, "old", None)
    certificate = store.sign(
        "ops", passphrase=None, public_key=public, name="old", valid_seconds=YEAR
    )
    store.store_certificate("old", certificate)
    loaded = store.identity("old")
    assert loaded.certificate == certificate
    assert loaded.signing_public_key is not None


def test_an_earlier_key_file_beside_a_version_2_certificate_is_refused_untouched(
    store: Keystore,
) -> None:
    # No signing key made by the upgrade could be the one the certificate binds.
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    public = write_earlier_key_file(store, "old", None)
    certificate = store.sign(
        "ops",
        passphrase=None,
        public_key=public,
        signing_key=os.urandom(32),
        name="old",
        valid_seconds=YEAR,
    )
    # Written as it would be copied in by hand: store_certificate refuses it.
    (store.path / "identities" / "old.crt").write_bytes(armor_certificate(certificate))
    before = snapshot(store.path)
    with pytest.raises(KeystoreCorruptError, match="for another signing key"):
        store.identity("old")
    with pytest.raises(KeystoreCorruptError, match="for another signing key"):
        store.upgrade_identity("old")
    assert snapshot(store.path) == before


# -- certificates the keystore issues -----------------------------------------------------


def test_a_certificate_issued_with_an_identity_binds_its_signing_key(store: Keystore) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    issued = store.issue_identity(
        "api", ca="ops", ca_passphrase=None, passphrase=None, valid_seconds=YEAR
    )
    assert issued.certificate is not None
    assert issued.certificate.version == 2
    assert issued.certificate.signing_key == issued.signing_public_key
    assert store.identity("api").certificate == issued.certificate


def test_a_certificate_for_another_signing_key_is_not_stored(store: Keystore) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    api = store.new_identity("api", passphrase=None)
    wrong = store.sign(
        "ops",
        passphrase=None,
        public_key=api.public_key,
        signing_key=os.urandom(32),
        name="api",
        valid_seconds=YEAR,
    )
    before = snapshot(store.path)
    with pytest.raises(ValueError, match=r"binds signing key SHA256:.*not identity 'api'"):
        store.store_certificate("api", wrong)
    assert snapshot(store.path) == before


# -- public key tokens --------------------------------------------------------------------


def test_a_token_joins_both_public_keys_and_parses_back() -> None:
    static, signing = os.urandom(32), os.urandom(32)
    token = encode_public_token(static, signing)
    assert token == f"{encode_key(static)}:{encode_key(signing)}"
    assert decode_public_token(token) == (static, signing)
    assert decode_public_token(f"  {token}\n") == (static, signing)
    # The form of earlier releases: the X25519 key alone.
    assert encode_public_token(static, None) == encode_key(static)
    assert decode_public_token(encode_key(static)) == (static, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid base64|32 bytes"),
        ("junk!", "not valid base64"),
        ("AAAA", "32 bytes"),
        (f"{encode_key(bytes(32))}:", "signing key is 32 bytes"),
        (f":{encode_key(bytes(32))}", "public key is 32 bytes"),
        (f"{encode_key(bytes(32))}:{encode_key(bytes(31))}", "signing key is 32 bytes"),
        (f"{encode_key(bytes(32))}:not base64!", "signing key is not valid base64"),
        (":".join([encode_key(bytes(32))] * 3), "more than two parts"),
    ],
)
def test_text_that_is_not_a_key_or_a_token_is_a_typed_error(text: str, message: str) -> None:
    with pytest.raises(MalformedKeyError, match=message) as caught:
        decode_public_token(text)
    assert isinstance(caught.value, ValueError)


# -- pins and what trust returns ----------------------------------------------------------


def test_a_pinned_signing_key_round_trips_through_peers_toml(store: Keystore) -> None:
    static, signing = os.urandom(32), os.urandom(32)
    store.add_peer("db", static, ["storage"], signing_key=signing)
    store.add_peer("cache", os.urandom(32))
    text = (store.path / "peers.toml").read_text()
    assert f'signing_key = "{encode_key(signing)}"' in text
    trust = store.trust()
    db, cache = trust.peer_by_name("db"), trust.peer_by_name("cache")
    assert db is not None
    assert cache is not None
    assert (db.public_key, db.signing_key, db.groups) == (static, signing, frozenset({"storage"}))
    assert cache.signing_key is None
    assert trust.verify(static).signing_key == signing


@pytest.mark.parametrize("value", ['"not base64!"', '"AAAA"', "7", "[]"])
def test_a_malformed_pinned_signing_key_is_a_damaged_peers_file(
    store: Keystore, value: str
) -> None:
    store.add_peer("db", os.urandom(32), signing_key=os.urandom(32))
    path = store.path / "peers.toml"
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(f"signing_key = {value}" if x.startswith("signing_key") else x for x in lines)
    )
    with pytest.raises(KeystoreCorruptError, match=rf"{path} is damaged: entry 'db'"):
        store.trust()


def test_two_pins_may_not_share_a_signing_key(store: Keystore) -> None:
    signing = os.urandom(32)
    store.add_peer("db", os.urandom(32), signing_key=signing)
    before = snapshot(store.path)
    with pytest.raises(DuplicatePeerError, match="signing key is already pinned as 'db'"):
        store.add_peer("db2", os.urandom(32), signing_key=signing)
    assert snapshot(store.path) == before


def certificate_bytes(ca: Ed25519PrivateKey, identity: Identity, *, version: int) -> bytes:
    return sign_certificate(
        ca,
        subject_key=identity.public_key,
        signing_key=identity.signing_public_key if version == 2 else None,
        name=identity.name or "",
        serial=1,
        not_before=int(time.time()) - 60,
        not_after=int(time.time()) + YEAR,
    ).encoded


def test_trust_learns_the_signing_key_from_a_version_2_certificate() -> None:
    ca, api = Ed25519PrivateKey.generate(), Identity.generate("api")
    trust = TrustStore()
    trust.add_ca("ops", ca.public_key().public_bytes_raw())
    peer = trust.verify(api.public_key, certificate_bytes(ca, api, version=2))
    assert peer.signing_key == api.signing_public_key
    assert trust.verify(api.public_key, certificate_bytes(ca, api, version=1)).signing_key is None


def test_a_pin_wins_over_the_signing_key_a_certificate_binds() -> None:
    ca, api = Ed25519PrivateKey.generate(), Identity.generate("api")
    pinned_signing = os.urandom(32)
    trust = TrustStore()
    trust.add_ca("ops", ca.public_key().public_bytes_raw())
    trust.add_peer("api", api.public_key, signing_key=pinned_signing)
    peer = trust.verify(api.public_key, certificate_bytes(ca, api, version=2))
    assert peer.signing_key == pinned_signing
    assert peer.certificate is None
