"""Keys and DSSE envelopes as the team cache reads them: the cheap reading of keys in their fixed
encodings (theoryx.provenance.keys) agrees with cryptography's full parser, and the check of an
entry (theoryx.remote.trust) accepts and refuses exactly what theoryx.provenance.dsse does, saying why."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from theoryx.errors import RemoteRejected, SigningKeyError, TheoryxError
from theoryx.provenance import dsse, keys
from theoryx.remote import config, trust

TYPE = "application/vnd.theoryx.ac+json"


@pytest.fixture
def keypair(tmp_path: Path) -> Path:
    path = tmp_path / "k.key"
    keys.generate(path)
    return path


def test_keys_in_the_fixed_encodings_are_read_without_the_pem_parser(keypair: Path) -> None:
    public = keys.load_public(keys.public_path(keypair)).public_bytes_raw()
    assert keys.raw_public_key(keys.public_path(keypair).read_bytes()) == public
    assert keys.raw_public_key(keypair.read_bytes()) == public  # the private key's public half
    assert keys.load_public(keypair).public_bytes_raw() == public
    assert keys.keyid(keys.load_public(keypair)) == hashlib.sha256(public).hexdigest()


def test_reading_a_key_and_checking_an_entry_leave_the_pem_parser_unimported(keypair: Path) -> None:
    """What a remote hit loads: cryptography's ed25519 (with its own ``_serialization`` enums), not
    the PEM parser (``serialization``, ~10 ms)."""
    import subprocess
    import sys

    good = json.dumps(dsse.sign(b'{"v": 1}', TYPE, keys.load_private(keypair)).to_json())
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from theoryx.remote import trust\n"
        "from theoryx.provenance import keys\n"
        "k = keys.load_public(Path(sys.argv[1]))\n"
        "assert trust.verified(sys.argv[2].encode(), sys.argv[3], [k]) == b'{\"v\": 1}'\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.endswith('.serialization') or '.ssh' in m)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(keys.public_path(keypair)), good, TYPE],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [], out


def test_other_files_go_through_the_full_parser_and_fail_as_it_does(tmp_path: Path, keypair: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ec.pub").write_bytes(ec_pem)
    assert keys.raw_public_key(ec_pem) is None
    with pytest.raises(SigningKeyError, match="not an ed25519 key"):
        keys.load_public(tmp_path / "ec.pub")
    (tmp_path / "junk.pub").write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n")
    with pytest.raises(SigningKeyError, match="not a PEM public key"):
        keys.load_public(tmp_path / "junk.pub")
    with pytest.raises(SigningKeyError, match="cannot read key file"):
        keys.load_public(tmp_path / "missing.pub")
    # A valid key with Windows line ends: not the fixed form, but cryptography reads it.
    crlf = tmp_path / "crlf.pub"
    crlf.write_bytes(keys.public_path(keypair).read_bytes().replace(b"\n", b"\r\n"))
    assert keys.load_public(crlf).public_bytes_raw() == keys.load_public(keypair).public_bytes_raw()


def envelopes(key: Path, other: Path) -> dict[str, Any]:
    """Envelopes, good and bad, as JSON-ready dicts."""
    priv = keys.load_private(key)
    good = dsse.sign(b'{"v": 1}', TYPE, priv).to_json()
    other_signed = dsse.sign(b'{"v": 1}', TYPE, keys.load_private(other)).to_json()

    def edit(**changes: Any) -> dict[str, Any]:
        return {**json.loads(json.dumps(good)), **changes}

    sig = good["signatures"][0]
    flipped = bytearray(base64.b64decode(sig["sig"]))
    flipped[0] ^= 1
    raw_sig = base64.b64decode(sig["sig"])
    return {
        "good": good,
        "no keyid": edit(signatures=[{"sig": sig["sig"]}]),
        "empty keyid": edit(signatures=[{"keyid": "", "sig": sig["sig"]}]),
        "urlsafe unpadded": edit(signatures=[{"keyid": sig["keyid"],
                                              "sig": base64.urlsafe_b64encode(raw_sig).decode().rstrip("=")}]),
        "two signatures, the second good": edit(signatures=[other_signed["signatures"][0], sig]),
        "other key": other_signed,
        "wrong keyid": edit(signatures=[{"keyid": "ab" * 32, "sig": sig["sig"]}]),
        "flipped signature": edit(signatures=[{"keyid": sig["keyid"], "sig": base64.b64encode(flipped).decode()}]),
        "payload changed": edit(payload=base64.b64encode(b'{"v": 2}').decode()),
        "type changed": edit(payloadType="application/other"),
        "payload not base64": edit(payload="%%%"),
        "payload not canonical": edit(payload=good["payload"] + "=="),
        "payload not a string": edit(payload=5),
        "no signatures": edit(signatures=[]),
        "signature not an object": edit(signatures=["x"]),
        "keyid not a string": edit(signatures=[{"keyid": 5, "sig": sig["sig"]}]),
        "sig missing": edit(signatures=[{"keyid": sig["keyid"]}]),
        "not an object": [good],
        "no payloadType": {k: v for k, v in good.items() if k != "payloadType"},
    }


def dsse_accepts(envelope: Any, pubs: list[Any]) -> bytes | None:
    """What theoryx.provenance.dsse makes of it (the reference)."""
    try:
        parsed = dsse.Envelope.from_json(envelope)
    except TheoryxError:
        return None
    if parsed.payload_type != TYPE:
        return None
    for key in pubs:
        try:
            dsse.verify(parsed, key)
            return parsed.payload
        except TheoryxError:
            continue
    return None


def test_envelopes_are_accepted_and_refused_exactly_as_dsse_does(tmp_path: Path, keypair: Path) -> None:
    other = tmp_path / "other.key"
    keys.generate(other)
    trusted = [keys.load_public(keypair)]
    cases = envelopes(keypair, other)
    for name, envelope in cases.items():
        expected = dsse_accepts(envelope, trusted)
        try:
            got: bytes | None = trust.verified(json.dumps(envelope).encode(), TYPE, trusted)
        except RemoteRejected:
            got = None
        assert got == expected, name
    assert dsse_accepts(cases["good"], trusted) == b'{"v": 1}'
    assert dsse_accepts(cases["two signatures, the second good"], trusted) == b'{"v": 1}'
    assert dsse_accepts(cases["flipped signature"], trusted) is None


def test_refusals_say_why(keypair: Path) -> None:
    trusted = [keys.load_public(keypair)]
    with pytest.raises(RemoteRejected, match="not JSON"):
        trust.verified(b"{", TYPE, trusted)
    good = dsse.sign(b"{}", TYPE, keys.load_private(keypair)).to_json()
    with pytest.raises(RemoteRejected, match="no trusted key is configured"):
        trust.verified(json.dumps(good).encode(), TYPE, [])
    with pytest.raises(RemoteRejected, match=r"is not application/vnd\.theoryx\.ac"):
        trust.verified(json.dumps({**good, "payloadType": "x/y"}).encode(), TYPE, trusted)
    stranger = dsse.sign(b"{}", TYPE, keys.load_private(keypair))
    with pytest.raises(RemoteRejected, match=r"not signed by a trusted key \(signed by [0-9a-f]{16}\)"):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        trust.verified(json.dumps(stranger.to_json()).encode(), TYPE, [Ed25519PrivateKey.generate().public_key()])


def test_the_default_signing_key_is_where_keygen_puts_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.default_signing_key_path() == keys.default_path()
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.default_signing_key_path() == keys.default_path()
    assert os.fspath(config.default_signing_key_path()).endswith("/.config/theoryx/signing.key")


def test_the_fast_base64_check_accepts_only_what_the_canonical_one_accepts_with_the_same_bytes() -> None:
    from theoryx.core.b64 import Base64Error, canonical_b64decode, standard_b64decode

    texts: list[object] = [5, None, b"QUJD", "", "=", "==", "QQ", "QQ=", "QQ==", "QR==", "QQ===", "Q Q==", "QQ==\n",
                           "QUJD", "QUJD\n", "QU JD", "QUJD=", "-_-_", "+/+/", "+/+", "é===", "QUJ\u00e9", "QU\x00JD"]
    for n in range(0, 40):
        data = bytes(range(n))
        texts += [base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode(),
                  base64.b64encode(data).decode().rstrip("=")]
    for text in texts:
        fast = standard_b64decode(text)
        try:
            reference: bytes | None = canonical_b64decode(text)
        except Base64Error:
            reference = None
        if fast is not None:
            assert fast == reference, text
    for n in range(0, 40):  # what theoryx writes takes the fast path
        assert standard_b64decode(base64.b64encode(bytes(range(n))).decode()) == bytes(range(n))


def test_a_trusted_key_file_changed_in_place_is_read_again(tmp_path: Path, keypair: Path) -> None:
    path = tmp_path / "trusted.pub"
    path.write_bytes(keys.public_path(keypair).read_bytes())
    first = keys.load_public(path).public_bytes_raw()
    assert keys.load_public(path).public_bytes_raw() == first
    other = tmp_path / "other.key"
    keys.generate(other)
    path.write_bytes(keys.public_path(other).read_bytes())   # same size, same name, new key
    assert keys.load_public(path).public_bytes_raw() == keys.load_public(other).public_bytes_raw() != first


def test_a_key_file_that_is_a_fifo_or_too_large_is_refused_without_blocking(tmp_path: Path, keypair: Path) -> None:
    """A FIFO in a trusted key's place (or the signing key's) hung a remote hit or an upload
    forever on a blocking read; a huge file was read whole. Now both are SigningKeyError at once
    and a link to a key file still works."""
    import threading

    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (keys.MAX_KEY_BYTES + 1))
    outcome: list[str] = []

    def attempt() -> None:
        for load, path in ((keys.load_public, fifo), (keys.load_private, fifo), (keys.load_public, big)):
            try:
                load(path)
                outcome.append("loaded")
            except SigningKeyError as exc:
                outcome.append(str(exc))

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        with open(fifo, "wb"):     # release the blocked reader so the test process can end
            pass
        pytest.fail("reading a key file that is a FIFO blocked")
    assert [("not a regular file" in o, "more than the" in o) for o in outcome] == \
        [(True, False), (True, False), (False, True)], outcome
    link = tmp_path / "link.pub"
    link.symlink_to(keys.public_path(keypair))
    assert keys.keyid(keys.load_public(link)) == keys.keyid(keys.load_private(keypair).public_key())
