"""The keystore on disk: what it stores, how it refuses bad input, and that a
failed or interrupted operation never loses or corrupts anything."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystore import (
    Argon2idCost,
    AuthorityExpiredError,
    CertificateError,
    DuplicateNameError,
    Identity,
    InsecurePermissionsError,
    Keystore,
    KeystoreCorruptError,
    KeystoreError,
    RevocationListMissingError,
    RevokedError,
    UnknownNameError,
    WrongPassphraseError,
    _files,
    default_home,
    encode_key,
    sign_certificate,
)
from keystore.armor import dearmor

YEAR = 365 * 86_400


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` and its bytes (the lock file aside)."""
    return {
        str(file.relative_to(path)): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file() and file.name != ".lock"
    }


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    # The cheaper Argon2id cost, asked for by name: the default's 256 MiB
    # would make each encrypted key of the suite cost most of a second.
    return Keystore.open(tmp_path / "home", kdf=Argon2idCost.INTERACTIVE)


def argon2id_header(path: Path) -> str:
    return next(
        line.removeprefix("Argon2id: ")
        for line in path.read_text().splitlines()
        if line.startswith("Argon2id: ")
    )


# An identity key file as the keystore wrote it before the default cost was
# raised: libsodium's interactive parameters, recorded in its header.
EARLIER_KEY_FILE = """\
-----BEGIN SECURESESS IDENTITY KEY-----
Name: old
Public-Key: fjBXtI5ltRY6RtfnBzqNew6Sw/AIEBZbpg0i0mlnYRM=
Encryption: argon2id-xchacha20poly1305
Argon2id: ops=2,mem=67108864
Salt: 0pglj2Dxoz1d7aanL+rMUA==

PM757gebhE+7nwcLXXapW7zixVnabmow6+itS1ogH6u3jFpDw3rl41a097Y9jkEx
rFMqBu8eOZsITiH70JrKeBrkwjdBDiIC
-----END SECURESESS IDENTITY KEY-----
"""
EARLIER_PASSPHRASE = "before the change"


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURESESS_HOME", str(tmp_path / "from-env"))
    assert default_home() == tmp_path / "from-env"
    assert Keystore.open().path == tmp_path / "from-env"
    monkeypatch.delenv("SECURESESS_HOME")
    assert default_home().name == "securesess"


def test_files_are_private(store: Keystore) -> None:
    store.new_identity("api", passphrase="correct horse")
    store.add_peer("db", os.urandom(32))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    for file in store.path.rglob("*"):
        expected = 0o700 if file.is_dir() else 0o600
        assert stat.S_IMODE(file.stat().st_mode) == expected, file


def test_an_encrypted_identity_needs_its_passphrase(store: Keystore) -> None:
    created = store.new_identity("api", passphrase="correct horse")
    assert store.is_encrypted("api")
    loaded = store.identity("api", passphrase="correct horse")
    assert loaded.public_key == created.public_key
    assert loaded.private_bytes() == created.private_bytes()
    before = snapshot(store.path)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        store.identity("api", passphrase="battery staple")
    with pytest.raises(WrongPassphraseError, match="a passphrase is needed"):
        store.identity("api")
    assert snapshot(store.path) == before
    # The public half is readable without the passphrase.
    assert store.public_key("api") == created.public_key


def test_the_private_key_is_not_in_the_file_in_clear(store: Keystore) -> None:
    created = store.new_identity("api", passphrase="correct horse")
    text = (store.path / "identities" / "api.key").read_text()
    assert encode_key(created.private_bytes()) not in text
    assert encode_key(created.public_key) in text  # the public half, on purpose


def test_an_unencrypted_identity_is_only_made_on_request(store: Keystore) -> None:
    created = store.new_identity("svc", passphrase=None)
    assert not store.is_encrypted("svc")
    assert store.identity("svc").public_key == created.public_key


def test_duplicate_unknown_and_malformed_names(store: Keystore) -> None:
    store.new_identity("api", passphrase=None)
    before = snapshot(store.path)
    with pytest.raises(DuplicateNameError, match="exists"):
        store.new_identity("api", passphrase=None)
    with pytest.raises(UnknownNameError, match="no identity named 'nope'"):
        store.identity("nope")
    with pytest.raises(ValueError, match="not allowed"):
        store.new_identity("../escape", passphrase=None)
    assert snapshot(store.path) == before


def test_a_key_others_can_read_is_refused(store: Keystore) -> None:
    store.new_identity("api", passphrase=None)
    key_file = store.path / "identities" / "api.key"
    key_file.chmod(0o644)
    with pytest.raises(InsecurePermissionsError, match=f"chmod 600 {key_file}"):
        store.identity("api")
    key_file.chmod(0o600)
    store.identity("api")


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda text: text[: len(text) // 2], KeystoreCorruptError, "truncated"),
        (lambda text: "garbage", KeystoreCorruptError, "not a securesess identity key file"),
        (
            lambda text: text.replace("Public-Key: ", "Public-Key: AAAA"),
            WrongPassphraseError,
            "or the file was altered",
        ),
        (
            lambda text: text.replace("Salt: ", "Salt: !"),
            KeystoreCorruptError,
            "damaged encryption headers",
        ),
    ],
)
def test_damaged_key_files_are_named_not_loaded(
    store: Keystore, damage: object, error: type[Exception], message: str
) -> None:
    store.new_identity("api", passphrase="correct horse")
    key_file = store.path / "identities" / "api.key"
    key_file.write_text(damage(key_file.read_text()))  # type: ignore[operator]
    with pytest.raises(error, match=message):
        store.identity("api", passphrase="correct horse")


def test_an_altered_unencrypted_key_is_detected(store: Keystore) -> None:
    store.new_identity("svc", passphrase=None)
    other = encode_key(os.urandom(32))
    key_file = store.path / "identities" / "svc.key"
    lines = key_file.read_text().splitlines()
    lines = [f"Public-Key: {other}" if line.startswith("Public-Key") else line for line in lines]
    key_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(KeystoreCorruptError, match="public key does not match"):
        store.identity("svc")


def test_changing_the_passphrase(store: Keystore) -> None:
    created = store.new_identity("api", passphrase="old")
    with pytest.raises(WrongPassphraseError):
        store.change_passphrase("api", old="wrong", new="new")
    store.change_passphrase("api", old="old", new="new")
    assert store.identity("api", passphrase="new").public_key == created.public_key
    store.change_passphrase("api", old="new", new=None)
    assert not store.is_encrypted("api")


def test_rotation_retires_the_old_key_and_its_certificate(store: Keystore) -> None:
    old = store.new_identity("api", passphrase=None)
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    certificate = store.sign(
        "ops", passphrase=None, public_key=old.public_key, name="api", valid_seconds=YEAR
    )
    store.store_certificate("api", certificate)
    new = store.rotate_identity("api", passphrase=None)
    assert new.public_key != old.public_key
    assert store.identity("api").certificate is None
    retired = sorted(p.suffix for p in (store.path / "identities" / "retired").iterdir())
    assert retired == [".crt", ".key"]


def test_delete(store: Keystore) -> None:
    store.new_identity("api", passphrase=None)
    store.delete_identity("api")
    assert store.identity_names() == []
    with pytest.raises(UnknownNameError):
        store.delete_identity("api")


def test_pinned_peers(store: Keystore) -> None:
    key = os.urandom(32)
    store.add_peer("db", key, ["storage", "backend"])
    peer = store.trust().peer_by_name("db")
    assert peer is not None
    assert (peer.public_key, peer.groups) == (key, frozenset({"storage", "backend"}))
    before = snapshot(store.path)
    with pytest.raises(DuplicateNameError):
        store.add_peer("db", os.urandom(32))
    with pytest.raises(DuplicateNameError, match="already pinned as 'db'"):
        store.add_peer("db2", key)
    assert snapshot(store.path) == before
    store.remove_peer("db")
    with pytest.raises(UnknownNameError):
        store.remove_peer("db")


def test_a_damaged_toml_file_is_reported_with_its_name(store: Keystore) -> None:
    (store.path / "peers.toml").write_text("[peers.db\npublic_key = 1")
    with pytest.raises(KeystoreCorruptError, match=r"peers\.toml is damaged"):
        store.trust()
    (store.path / "peers.toml").write_text('[peers.db]\npublic_key = "not base64!"')
    with pytest.raises(KeystoreCorruptError, match="entry 'db'"):
        store.trust()


def test_the_ca_issues_certificates_this_keystore_trusts(store: Keystore) -> None:
    api = store.new_identity("api", passphrase=None)
    store.init_ca("ops", passphrase="ca secret", valid_seconds=YEAR)
    with pytest.raises(WrongPassphraseError):
        store.sign("ops", passphrase="nope", public_key=api.public_key, name="api", valid_seconds=1)
    first = store.sign(
        "ops",
        passphrase="ca secret",
        public_key=api.public_key,
        name="api",
        groups=["web"],
        valid_seconds=90 * 86_400,
    )
    second = store.sign(
        "ops", passphrase="ca secret", public_key=api.public_key, name="api", valid_seconds=60
    )
    assert (first.serial, second.serial) == (1, 2)
    store.store_certificate("api", first)
    loaded = store.identity("api")
    assert loaded.certificate == first
    peer = store.trust().verify_certificate(first)
    assert (peer.name, peer.groups) == ("api", frozenset({"web"}))
    store.revoke_serial(store.ca_info("ops")["public_key"], 1)
    with pytest.raises(RevokedError):
        store.trust().verify_certificate(first)


def test_a_certificate_is_stored_only_with_its_own_key(store: Keystore) -> None:
    store.new_identity("api", passphrase=None)
    other = store.new_identity("other", passphrase=None)
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    certificate = store.sign(
        "ops", passphrase=None, public_key=other.public_key, name="other", valid_seconds=YEAR
    )
    with pytest.raises(CertificateError, match="not for identity 'api'"):
        store.store_certificate("api", certificate)


def test_certificates_never_outlive_their_ca(store: Keystore) -> None:
    key = os.urandom(32)
    store.init_ca("short", passphrase=None, valid_seconds=3600)
    certificate = store.sign("short", passphrase=None, public_key=key, name="x", valid_seconds=YEAR)
    assert certificate.not_after <= store.ca_info("short")["not_after"]


def test_a_home_that_is_not_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    with pytest.raises(KeystoreError, match="exists but is not a directory"):
        Keystore.open(home)


def test_issue_identity_creates_key_and_certificate_in_one_call(store: Keystore) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=3600)
    issued = store.issue_identity(
        "api", ca="ops", ca_passphrase=None, passphrase="pw", groups=["web"], valid_seconds=600
    )
    loaded = store.identity("api", passphrase="pw")
    assert loaded.public_key == issued.public_key
    assert loaded.certificate == issued.certificate
    assert loaded.certificate is not None
    assert (loaded.certificate.name, loaded.certificate.groups) == ("api", ("web",))
    assert store.trust().verify(loaded.public_key, loaded.certificate).groups == {"web"}


def test_a_short_write_is_finished_not_left_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel may write fewer bytes than asked; make it write one at a time.
    real_write = os.write

    def one_byte(descriptor: int, data: bytes | memoryview) -> int:
        return real_write(descriptor, bytes(data[:1]))

    monkeypatch.setattr(os, "write", one_byte)
    target = tmp_path / "peers.toml"
    _files.write_atomically(target, b"[peers]\n" * 100)
    assert target.read_bytes() == b"[peers]\n" * 100


@pytest.mark.parametrize("filename", ["peers.toml", "cas.toml", "revoked.toml"])
def test_a_trust_file_others_may_write_is_refused(tmp_path: Path, filename: str) -> None:
    # Whoever may write these files decides whom the keystore trusts.
    store = Keystore.open(tmp_path / "home")
    store.add_peer("api", bytes(range(32)))
    store.revoke_key(bytes(range(1, 33)))
    (store.path / "cas.toml").write_text("[cas]\n", encoding="utf-8")
    (store.path / "cas.toml").chmod(0o600)
    assert store.trust().peer_by_key(bytes(range(32))) is not None
    (store.path / filename).chmod(0o664)
    with pytest.raises(InsecurePermissionsError, match=f"{filename} is writable by other users"):
        store.trust()
    (store.path / filename).chmod(0o644)  # readable is fine: these hold public keys
    assert store.trust().peer_by_key(bytes(range(32))) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user takes root")
def test_a_trust_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    store = Keystore.open(tmp_path / "home")
    store.add_peer("api", bytes(range(32)))
    os.chown(store.path / "peers.toml", 12345, 12345)
    with pytest.raises(InsecurePermissionsError, match=r"peers\.toml belongs to another user"):
        store.trust()


# -- the cost of guessing a passphrase ---------------------------------------------------


def test_new_keys_are_sealed_at_the_moderate_argon2id_cost_by_default(tmp_path: Path) -> None:
    # 3 passes over 256 MiB: four times the memory of the interactive cost
    # that new files used to get, so each offline guess costs as much more.
    store = Keystore.open(tmp_path / "home")
    assert store.kdf == Argon2idCost.MODERATE == Argon2idCost(3, 256 << 20)
    store.new_identity("api", passphrase="correct horse")
    store.init_ca("ops", passphrase="ca passphrase", valid_seconds=YEAR)
    assert argon2id_header(store.path / "identities" / "api.key") == "ops=3,mem=268435456"
    assert argon2id_header(store.path / "authorities" / "ops.key") == "ops=3,mem=268435456"
    assert store.identity("api", passphrase="correct horse").name == "api"


def test_the_cheaper_cost_is_asked_for_by_name(tmp_path: Path) -> None:
    assert (
        Argon2idCost.named("interactive") == Argon2idCost.INTERACTIVE == Argon2idCost(2, 64 << 20)
    )
    assert Argon2idCost.named("sensitive") == Argon2idCost(4, 1 << 30)
    store = Keystore.open(tmp_path / "home", kdf=Argon2idCost.named("interactive"))
    store.new_identity("api", passphrase="correct horse")
    assert argon2id_header(store.path / "identities" / "api.key") == "ops=2,mem=67108864"


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Argon2idCost.named("fast"), ValueError),
        (lambda: Argon2idCost(0, 64 << 20), ValueError),
        (lambda: Argon2idCost(3, 1 << 40), ValueError),
        (lambda: Keystore(Path("home"), kdf="interactive"), TypeError),  # type: ignore[arg-type]
    ],
)
def test_a_bad_cost_is_refused_when_it_is_made(
    make: Callable[[], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        make()


def test_a_key_file_of_the_earlier_cost_still_opens(store: Keystore) -> None:
    path = store.path / "identities" / "old.key"
    path.parent.mkdir(mode=0o700)
    path.write_text(EARLIER_KEY_FILE)
    path.chmod(0o600)
    default = Keystore.open(store.path)  # its kdf is for new files only
    loaded = default.identity("old", passphrase=EARLIER_PASSPHRASE)
    assert encode_key(loaded.public_key) == "fjBXtI5ltRY6RtfnBzqNew6Sw/AIEBZbpg0i0mlnYRM="
    # A new passphrase is sealed at the keystore's cost: passwd upgrades a file.
    default.change_passphrase("old", old=EARLIER_PASSPHRASE, new="after the change")
    assert argon2id_header(path) == "ops=3,mem=268435456"
    assert default.identity("old", passphrase="after the change").public_key == loaded.public_key


@pytest.mark.parametrize(
    "parameters",
    [
        "ops=2,mem=1099511627776",  # 1 TiB
        "ops=2,mem=1073741825",  # a byte over 1 GiB
        "ops=4294967295,mem=67108864",
        "ops=0,mem=67108864",
        "ops=2,mem=1024",
    ],
)
def test_a_key_file_asking_for_absurd_argon2id_parameters_is_refused(
    store: Keystore, parameters: str
) -> None:
    # A planted key file must not make loading it take all memory (or hours).
    path = store.path / "identities" / "old.key"
    path.parent.mkdir(mode=0o700)
    path.write_text(EARLIER_KEY_FILE.replace("ops=2,mem=67108864", parameters))
    path.chmod(0o600)
    with pytest.raises(KeystoreCorruptError, match="asks for Argon2id parameters out of range"):
        store.identity("old", passphrase=EARLIER_PASSPHRASE)


# -- directories other users could write --------------------------------------------------


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_keystore_directory_others_may_write_is_refused(store: Keystore, mode: int) -> None:
    # Whoever may write the directory may replace peers.toml with their own,
    # or delete revoked.toml, however strict the files' own modes are.
    store.add_peer("api", bytes(range(32)))
    store.new_identity("svc", passphrase=None)
    store.path.chmod(mode)
    with pytest.raises(InsecurePermissionsError, match=f"{store.path} is writable by other users"):
        store.trust()
    with pytest.raises(InsecurePermissionsError, match=f"chmod go-w {store.path}$"):
        store.identity("svc")
    store.path.chmod(0o700)
    assert store.trust().peer_by_key(bytes(range(32))) is not None


def test_a_directory_others_may_write_above_the_keystore_is_refused(tmp_path: Path) -> None:
    # Renaming the keystore away and putting another in its place takes only
    # the right to write its parent.
    shared = tmp_path / "shared"
    shared.mkdir()
    store = Keystore.open(shared / "home", kdf=Argon2idCost.INTERACTIVE)
    store.add_peer("api", bytes(range(32)))
    shared.chmod(0o777)
    with pytest.raises(InsecurePermissionsError, match=f"{shared} is writable by other users"):
        store.trust()
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot rename what is ours
    assert store.trust().peer_by_key(bytes(range(32))) is not None


def test_a_writable_directory_behind_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "home").mkdir(parents=True, mode=0o700)
    (tmp_path / "link").symlink_to(shared / "home")
    store = Keystore.open(tmp_path / "link", kdf=Argon2idCost.INTERACTIVE)
    store.add_peer("api", bytes(range(32)))
    shared.chmod(0o777)
    with pytest.raises(InsecurePermissionsError, match=f"{shared} is writable by other users"):
        store.trust()


def test_a_trust_file_that_links_into_a_directory_others_may_write_is_refused(
    store: Keystore, tmp_path: Path
) -> None:
    # Opening the link reads the target: whoever may write the target's
    # directory may replace it, or delete it (undoing a revocation).
    shared = tmp_path / "shared"
    shared.mkdir()
    store.add_peer("api", bytes(range(32)))
    (store.path / "peers.toml").rename(shared / "peers.toml")
    (store.path / "peers.toml").symlink_to(shared / "peers.toml")
    assert store.trust().peer_by_key(bytes(range(32))) is not None
    shared.chmod(0o777)
    with pytest.raises(InsecurePermissionsError, match=f"{shared} is writable by other users"):
        store.trust()


def test_a_key_file_that_links_into_a_directory_others_may_write_is_refused(
    store: Keystore, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    store.new_identity("svc", passphrase=None)
    key_file = store.path / "identities" / "svc.key"
    (shared / key_file.name).write_bytes(key_file.read_bytes())
    (shared / key_file.name).chmod(0o600)
    key_file.unlink()
    key_file.symlink_to(shared / key_file.name)
    store.identity("svc")
    shared.chmod(0o777)
    with pytest.raises(InsecurePermissionsError, match=f"{shared} is writable by other users"):
        store.identity("svc")


def test_a_keys_subdirectory_others_may_write_is_refused(store: Keystore) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    (store.path / "authorities").chmod(0o777)
    with pytest.raises(InsecurePermissionsError, match="authorities is writable by other users"):
        store.ca_info("ops")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user takes root")
def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "theirs"
    parent.mkdir()
    store = Keystore.open(parent / "home", kdf=Argon2idCost.INTERACTIVE)
    store.add_peer("api", bytes(range(32)))
    os.chown(parent, 12345, 12345)
    with pytest.raises(InsecurePermissionsError, match=f"{parent} belongs to another user"):
        store.trust()


# -- a CA's own validity -----------------------------------------------------------------


def stolen_ca_key(store: Keystore, name: str) -> Ed25519PrivateKey:
    """CA ``name``'s signing key as a thief who copied its file holds it."""
    path = store.path / "authorities" / f"{name}.key"
    return Ed25519PrivateKey.from_private_bytes(dearmor(path.read_bytes(), "CA KEY", "").body)


def test_a_certificate_signed_with_a_ca_key_stolen_after_it_expired_is_refused(
    store: Keystore,
) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    api = store.new_identity("api", passphrase=None)
    later = int(time.time()) + 2 * YEAR  # the CA expired a year ago
    forged = sign_certificate(
        stolen_ca_key(store, "ops"),
        subject_key=api.public_key,
        name="api",
        groups=["admin"],
        serial=999,
        not_before=later - 60,
        not_after=later + 30 * 86_400,
    )
    with pytest.raises(AuthorityExpiredError, match="is from CA 'ops', which expired at"):
        store.trust().verify(api.public_key, forged, now=later)


def test_a_ca_is_trusted_for_its_own_window_where_it_was_made(store: Keystore) -> None:
    before = int(time.time())
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    not_before, not_after = store.trust().ca_validity("ops")
    assert not_before is not None
    assert not_after is not None
    assert before - 60 <= not_before <= int(time.time()) - 60
    assert not_after == not_before + 60 + YEAR
    info = store.ca_info("ops")
    assert (info["not_before"], info["not_after"]) == (not_before, not_after)
    store.issue_identity(
        "api", ca="ops", ca_passphrase=None, passphrase=None, valid_seconds=2 * YEAR
    )
    assert store.ca_info("ops")["not_before"] == not_before  # kept as the serial moves on
    api = store.identity("api")
    assert api.certificate is not None
    assert store.trust().verify(api.public_key, api.certificate).name == "api"


def test_a_ca_made_before_cas_toml_recorded_its_window_expires_with_its_own_file(
    store: Keystore,
) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    ca_key = store.ca_info("ops")["public_key"]
    # The entries written before: the key alone.
    (store.path / "cas.toml").write_text(f'[cas.ops]\npublic_key = "{encode_key(ca_key)}"\n')
    (store.path / "cas.toml").chmod(0o600)
    assert store.trust().ca_validity("ops")[1] == store.ca_info("ops")["not_after"]


def test_a_ca_trusted_from_elsewhere_carries_the_expiry_it_was_given(store: Keystore) -> None:
    ca = Ed25519PrivateKey.generate()
    ca_key = ca.public_key().public_bytes_raw()
    expiry = int(time.time()) + 86_400
    store.trust_ca("ops", ca_key, not_after=expiry)
    assert store.trust().ca_validity("ops") == (None, expiry)
    api = Identity.generate("api")
    late = sign_certificate(
        ca,
        subject_key=api.public_key,
        name="api",
        serial=1,
        not_before=expiry + 10,
        not_after=expiry + 100,
    )
    with pytest.raises(AuthorityExpiredError):
        store.trust().verify(api.public_key, late, now=expiry + 50)


def test_trusting_a_ca_that_has_expired_is_refused(store: Keystore) -> None:
    before = snapshot(store.path)
    with pytest.raises(ValueError, match=r"expired at .*: trusting it would admit no one"):
        store.trust_ca("ops", bytes(32), not_after=int(time.time()) - 1)
    assert snapshot(store.path) == before


# -- a revocation list that goes missing ---------------------------------------------------


def test_deleting_revoked_toml_does_not_trust_a_revoked_peer_again(store: Keystore) -> None:
    api = bytes(range(32))
    store.add_peer("api", api)
    store.revoke_key(api)
    with pytest.raises(RevokedError):
        store.trust().verify(api)
    (store.path / "revoked.toml").unlink()
    before = snapshot(store.path)
    with pytest.raises(RevocationListMissingError, match=r"revoked\.toml is missing, but .*peers"):
        store.trust()
    # Nor does a change to the trust quietly start a new, empty list.
    with pytest.raises(RevocationListMissingError):
        store.revoke_key(bytes(range(1, 33)))
    with pytest.raises(RevocationListMissingError):
        store.add_peer("db", bytes(range(2, 34)))
    with pytest.raises(RevocationListMissingError):
        store.remove_peer("api")
    with pytest.raises(RevocationListMissingError):
        store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    assert snapshot(store.path) == before


def test_deleting_revoked_toml_does_not_trust_a_revoked_certificate_again(
    store: Keystore,
) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    api = store.issue_identity(
        "api", ca="ops", ca_passphrase=None, passphrase=None, valid_seconds=3600
    )
    assert api.certificate is not None
    store.revoke_serial(store.ca_info("ops")["public_key"], api.certificate.serial)
    (store.path / "revoked.toml").unlink()
    with pytest.raises(RevocationListMissingError, match=r"cas\.toml says this keystore keeps"):
        store.trust().verify(api.public_key, api.certificate)


def test_a_keystore_keeps_a_revocation_list_from_its_first_trust(store: Keystore) -> None:
    store.init_ca("ops", passphrase=None, valid_seconds=YEAR)
    assert (store.path / "revoked.toml").read_text() == "keys = []\nserials = []\n"
    assert 'revocations = "required"' in (store.path / "cas.toml").read_text()
    # Deleted before anything was revoked, it is still refused: nothing but
    # the list itself can say nothing was revoked.
    (store.path / "revoked.toml").unlink()
    with pytest.raises(RevocationListMissingError, match="install -m 600 /dev/null"):
        store.trust()
    (store.path / "revoked.toml").touch(mode=0o600)
    assert "ops" in store.trust().cas()


def test_a_fresh_keystore_needs_no_revocation_list(store: Keystore) -> None:
    assert not store.trust().cas()
    assert not (store.path / "revoked.toml").exists()


def test_a_keystore_from_before_the_requirement_still_loads_and_then_keeps_one(
    store: Keystore,
) -> None:
    # Trust files written before they named the requirement, no revoked.toml.
    (store.path / "peers.toml").write_text(f'[peers.api]\npublic_key = "{encode_key(bytes(32))}"\n')
    (store.path / "peers.toml").chmod(0o600)
    assert store.trust().peer_by_name("api") is not None
    store.revoke_key(bytes(range(1, 33)))  # the first change to the trust marks it
    assert 'revocations = "required"' in (store.path / "peers.toml").read_text()
    (store.path / "revoked.toml").unlink()
    with pytest.raises(RevocationListMissingError):
        store.trust()


def test_a_trust_file_with_a_strange_requirement_is_damaged(store: Keystore) -> None:
    store.add_peer("api", bytes(32))
    (store.path / "revoked.toml").unlink()
    path = store.path / "peers.toml"
    path.write_text(path.read_text().replace('"required"', '"optional"'))
    with pytest.raises(KeystoreCorruptError, match="revocations is 'optional', not 'required'"):
        store.trust()


def test_argon2id_without_the_memory_it_needs_is_a_keystore_error(
    store: Keystore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.new_identity("api", passphrase="correct horse")

    def no_memory(*args: object, **kwargs: object) -> bytes:
        raise nacl.exceptions.RuntimeError("Unexpected failure in key derivation")

    monkeypatch.setattr(nacl.pwhash.argon2id, "kdf", no_memory)
    with pytest.raises(KeystoreError, match="Argon2id could not have 64 MiB of memory") as caught:
        store.identity("api", passphrase="correct horse")
    assert "correct horse" not in str(caught.value)


def test_parents_a_keystore_creates_are_not_group_writable_under_umask_002(
    tmp_path: Path,
) -> None:
    # Debian and Fedora give users a umask of 002: a ~/.config the keystore
    # made would be group-writable, and then refused.
    old = os.umask(0o002)
    try:
        store = Keystore.open(tmp_path / "config" / "securesess", kdf=Argon2idCost.INTERACTIVE)
        store.add_peer("api", bytes(32))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config").stat().st_mode) == 0o755
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    assert store.trust().peer_by_name("api") is not None
