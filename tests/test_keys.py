"""Idempotency keys: their rule, random keys, and a batch's derived keys per line and attempt."""

from __future__ import annotations

import re

import pytest

from evolink_async._keys import (
    KEY_RULE,
    check_idempotency_key,
    derive_idempotency_key,
    new_idempotency_key,
)
from evolink_async.batch._linekeys import LineKeys
from evolink_async.errors import InvalidRequestError

SEED = "0123456789abcdef0123456789abcdef"
FP = "f" * 64


@pytest.mark.parametrize(
    "key",
    ["a" * 16, "A.b_c-d" * 3, "x" * 96, new_idempotency_key()],
    ids=["16", "punctuation", "96", "new_idempotency_key"],  # stable ids for pytest-xdist
)
def test_a_key_of_16_to_96_allowed_characters_passes(key: str) -> None:
    assert key == check_idempotency_key(key)


@pytest.mark.parametrize("key", ["a" * 15, "x" * 97, "with space 0123456", "slash/0123456789ab", 7])
def test_any_other_key_is_refused_naming_the_field_and_the_rule(key: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_idempotency_key(key, "client_request_id")
    assert ("client_request_id", KEY_RULE) == (info.value.field, info.value.rule)


def test_random_keys_look_like_evolink_s_own_and_differ() -> None:
    keys = {new_idempotency_key() for _ in range(100)}
    assert 100 == len(keys)
    assert all(re.fullmatch(r"run_[0-9a-f]{32}", k) for k in keys)


def test_a_derived_key_depends_on_every_input_and_shows_none() -> None:
    key = derive_idempotency_key(SEED, 7, 1, FP)
    assert key == derive_idempotency_key(SEED, 7, 1, FP)  # a rerun derives the same key
    others = {
        derive_idempotency_key("another seed 0000000000000000000", 7, 1, FP),
        derive_idempotency_key(SEED, 8, 1, FP),
        derive_idempotency_key(SEED, 7, 2, FP),
        derive_idempotency_key(SEED, 7, 1, "e" * 64),
    }
    assert key not in others
    assert 4 == len(others)
    assert re.fullmatch(r"evb_[0-9a-f]{40}", key)
    assert SEED not in key
    assert FP[:8] not in key


def test_line_keys_keep_an_attempt_s_key_and_give_a_new_attempt_a_new_one() -> None:
    intents = {1: 0, 2: 3}
    keys = LineKeys(SEED, {1: FP, 2: FP}, intents.__getitem__, resend={2: "evb_" + "9" * 40})
    first = keys.key(1, 1)
    intents[1] += 1  # its intent was journaled; a 429 sends the same attempt again
    assert first == keys.key(1, 1)
    assert first == derive_idempotency_key(SEED, 1, 1, FP)
    intents[1] += 1
    assert derive_idempotency_key(SEED, 1, 3, FP) == keys.key(1, 2)  # a new attempt
    assert "evb_" + "9" * 40 == keys.key(2, 1)  # a resent line: its journaled key
    assert derive_idempotency_key(SEED, 2, 4, FP) == keys.key(2, 2)


def test_line_keys_without_a_seed_give_no_key() -> None:
    assert None is LineKeys(None, {1: FP}, lambda _: 0).key(1, 1)
