from __future__ import annotations

import pytest

from chalicelib.core import passwords
from chalicelib.core.passwords import hash_password, needs_rehash, verify_password

# Tests hash at a cheap cost; the format and parsing are the same at any cost.
CHEAP = 10


def test_default_cost_is_owasp() -> None:
    phc = hash_password("correct horse")
    assert phc.startswith("$scrypt$ln=17,r=8,p=1$")
    assert verify_password("correct horse", phc)
    assert not needs_rehash(phc)


def test_round_trip_and_wrong_password() -> None:
    phc = hash_password("s3cret ünïcode", log_n=CHEAP)
    assert verify_password("s3cret ünïcode", phc)
    assert not verify_password("s3cret unicode", phc)
    assert not verify_password("", phc)


def test_phc_shape_has_unpadded_base64() -> None:
    phc = hash_password("pw", log_n=CHEAP)
    _, scheme, params, salt, key = phc.split("$")
    assert (scheme, params) == ("scrypt", "ln=10,r=8,p=1")
    assert "=" not in salt + key
    assert (len(salt), len(key)) == (22, 43)  # 16 and 32 bytes


def test_salts_differ() -> None:
    assert hash_password("pw", log_n=CHEAP) != hash_password("pw", log_n=CHEAP)


def test_cost_is_read_from_the_string() -> None:
    phc = hash_password("pw", log_n=CHEAP)
    assert verify_password("pw", phc)
    assert needs_rehash(phc)


@pytest.mark.parametrize(
    "phc",
    [
        "",
        "plain",
        "$scrypt$",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=10,r=8$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=10,r=8,p=1$not*base64$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0$a",
        "$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0$",
        "$scrypt$ln=0,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=-1,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        # Costs that would take gigabytes are refused, not attempted.
        "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=17,r=999,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA$extra",
    ],
)
def test_malformed_strings_are_false_not_errors(phc: str) -> None:
    assert verify_password("pw", phc) is False
    assert needs_rehash(phc)


def test_tampered_hash_fails() -> None:
    phc = hash_password("pw", log_n=CHEAP)
    head, key = phc.rsplit("$", 1)
    flipped = ("B" if key[0] == "A" else "A") + key[1:]
    assert not verify_password("pw", f"{head}${flipped}")


def test_unencodable_password_is_false() -> None:
    assert not verify_password("\ud800", hash_password("pw", log_n=CHEAP))


def test_dummy_hash_is_lazy_cached_and_valid() -> None:
    first = passwords.DUMMY_HASH
    assert first is passwords.DUMMY_HASH
    assert first.startswith("$scrypt$ln=17,r=8,p=1$")
    assert not verify_password("anything", first)


def test_unknown_module_attribute_still_raises() -> None:
    with pytest.raises(AttributeError):
        _ = passwords.NOT_THERE
