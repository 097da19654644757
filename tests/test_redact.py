"""The one redactor (``evolink_async._redact``): every registered secret, in every encoding a
server, a proxy or a log may echo it, and nothing else."""

from __future__ import annotations

import base64
import gc
import json
import logging
from collections.abc import Callable
from urllib.parse import quote

import pytest

from evolink_async._redact import REDACTED, protect, redact, redact_bytes, redact_value

SECRET = "sk-evo-REDACT-ME-4c1e9b07d2a85f36"
CALLBACK_SECRET = "Zq3_vT8-kP0wLm5xYb2nRc7dHs4jUe9a"


class Owner:
    """Holds secrets for as long as it lives."""


OWNER = Owner()
protect(OWNER, SECRET, CALLBACK_SECRET)


def json_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def every_other_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04X}" if i % 2 else c for i, c in enumerate(text))


#: (name, encoding) of the forms a secret is looked for in, here and in tests/test_secrets.py
ENCODINGS: list[tuple[str, Callable[[str], str]]] = [
    ("plain", lambda s: s),
    ("json-escaped", json_escaped),
    ("json-mixed", every_other_escaped),
    ("url-encoded", lambda s: "".join(f"%{ord(c):02X}" for c in s)),
    ("url-quote", lambda s: quote(s, safe="")),
    ("html-entities", lambda s: "".join(f"&#{ord(c)};" for c in s)),
    ("hex", lambda s: s.encode().hex()),
    ("base64", lambda s: base64.b64encode(s.encode()).decode()),
    ("base64-bearer", lambda s: base64.b64encode(f"Bearer {s}".encode()).decode()),
    ("base64-shifted", lambda s: base64.b64encode(f"xx{s}".encode()).decode()),
    ("urlsafe-base64", lambda s: base64.urlsafe_b64encode(f"?{s}".encode()).decode()),
]


@pytest.mark.parametrize("secret", [SECRET, CALLBACK_SECRET], ids=["api-key", "callback"])
@pytest.mark.parametrize(("name", "encode"), ENCODINGS, ids=[n for n, _ in ENCODINGS])
def test_a_registered_secret_is_redacted_in_every_encoding(
    secret: str, name: str, encode: Callable[[str], str]
) -> None:
    form = encode(secret)
    text = f"before {form} after"

    out = redact(text)
    out_bytes = redact_bytes(text.encode()).decode()

    assert form not in out
    assert REDACTED in out
    assert out == out_bytes
    assert out.startswith("before ")
    assert out.endswith(" after")


def test_a_json_body_stays_json_and_decodes_without_the_secret() -> None:
    body = '{"error": {"message": "bad key ' + json_escaped(SECRET) + '", "code": 401}}'

    data = json.loads(redact_bytes(body.encode()))

    assert {"error": {"message": f"bad key {REDACTED}", "code": 401}} == data


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abc.def-unknown-token",
        "the key sk-evo-someone-elses-key was refused",
    ],
)
def test_key_shapes_of_unknown_keys_are_redacted(text: str) -> None:
    assert REDACTED in redact(text)
    assert "abc.def" not in redact(text)
    assert "someone-elses" not in redact(text)


@pytest.mark.parametrize(
    "text",
    ["a fox in the snow", "task-unified-1700000000-abcdef12", "https://cdn.example.com/v.mp4?x=1"],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert text == redact(text)


def test_values_are_redacted_at_any_depth_keys_included() -> None:
    value = {"a": [SECRET, {"b": 1, SECRET: f"x{CALLBACK_SECRET}"}], "n": None}

    assert {"a": [REDACTED, {"b": 1, REDACTED: f"x{REDACTED}"}], "n": None} == redact_value(value)


def test_a_secret_is_forgotten_when_its_owner_is_gone_and_short_ones_are_never_taken() -> None:
    owner = Owner()
    protect(owner, "transient-secret-value", "short")
    assert REDACTED == redact("transient-secret-value")
    assert "short" == redact("short")

    del owner
    gc.collect()

    assert "transient-secret-value" == redact("transient-secret-value")


def test_log_records_of_the_package_logger_are_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="evolink_async")

    logging.getLogger("evolink_async").debug("echoed %s and %s", SECRET, json_escaped(SECRET))

    assert [f"echoed {REDACTED} and {REDACTED}"] == [r.getMessage() for r in caplog.records]
