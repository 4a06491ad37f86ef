"""consumers and key-auth credentials (cases from Kong's 14-consumers_spec and key-auth 01-api_spec)."""

from __future__ import annotations

import re

import pytest
from schema_cases import A_UUID, NOW, error_of, errors_of, row_of

from servegate.schema.entities import CONSUMERS, ENTITIES, KEYAUTH_CREDENTIALS, get_entity
from servegate.schema.output import to_output
from servegate.schema.validate import generate_key

AT_LEAST_ONE = "at least one of these fields must be non-empty: 'custom_id', 'username'"


@pytest.mark.parametrize(
    "name",
    ["example", "EXAMPLE", "exa.mp.le", "3x4mp13", "3x4-mp-13", "~3..x4~.M-p~1__3_", "孔", "Конг", "🦍"],
)
def test_valid_usernames(name: str) -> None:
    assert errors_of(CONSUMERS, {"username": name}) == {}


def test_username_is_not_a_utf8_name() -> None:
    assert errors_of(CONSUMERS, {"username": "bob smith@example.com"}) == {}


def test_consumer_needs_username_or_custom_id() -> None:
    err = error_of(CONSUMERS, {})
    assert err.to_json() == {
        "code": 2,
        "name": "schema violation",
        "message": f"schema violation ({AT_LEAST_ONE})",
        "fields": {"@entity": [AT_LEAST_ONE]},
    }
    assert errors_of(CONSUMERS, {"username": None, "custom_id": None}) == {"@entity": [AT_LEAST_ONE]}
    assert errors_of(CONSUMERS, {"custom_id": "c1"}) == {}


def test_consumer_row() -> None:
    row = row_of(CONSUMERS, {"username": "bob", "tags": ["t1", "t1", "t2"]})
    assert row == {
        "id": row["id"],
        "created_at": NOW,
        "updated_at": NOW,
        "username": "bob",
        "custom_id": None,
        "tags": ["t1", "t2"],
    }


def test_empty_username() -> None:
    assert errors_of(CONSUMERS, {"username": ""}) == {
        "username": "length must be at least 1",
        "@entity": [AT_LEAST_ONE],
    }


# ---- key-auth credentials


def test_declaration() -> None:
    e = KEYAUTH_CREDENTIALS
    assert (e.admin_name, e.nested_name, e.endpoint_key, e.cache_key) == (
        "key-auths",
        "key-auth",
        "key",
        ("key",),
    )
    assert e.ttl and not e.has_updated_at
    consumer = e.field_map()["consumer"]
    assert (consumer.required, consumer.on_delete, consumer.reference) == (True, "cascade", "consumers")
    assert get_entity("key-auths") is e
    assert list(ENTITIES) == ["services", "routes", "consumers", "plugins", "upstreams", "targets",
                             "keyauth_credentials"]


def test_consumer_is_required() -> None:
    assert error_of(KEYAUTH_CREDENTIALS, {}).message == "schema violation (consumer: required field missing)"


def test_generated_key() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", k) for k in keys)
    row = row_of(KEYAUTH_CREDENTIALS, {"consumer": {"id": A_UUID}})
    assert re.fullmatch(r"[A-Za-z0-9]{32}", row["key"])
    assert row == {
        "id": row["id"],
        "created_at": NOW,
        "consumer": {"id": A_UUID},
        "key": row["key"],
        "tags": None,
    }


def test_given_key_is_kept_and_updated_at_is_ignored() -> None:
    row = row_of(KEYAUTH_CREDENTIALS, {"consumer": {"id": A_UUID}, "key": "my-key", "updated_at": 5})
    assert row["key"] == "my-key" and "updated_at" not in row


TTLS = [(0, 0), (60, 60), (60.0, 60), (100000000, 100000000)]


@pytest.mark.parametrize(("ttl", "kept"), TTLS)
def test_ttl_option(ttl, kept) -> None:
    assert row_of(KEYAUTH_CREDENTIALS, {"consumer": {"id": A_UUID}, "ttl": ttl})["ttl"] == kept


@pytest.mark.parametrize("ttl", [-1, 100000001, 1.5, "60", True])
def test_bad_ttl_is_an_invalid_option(ttl) -> None:
    err = error_of(KEYAUTH_CREDENTIALS, {"consumer": {"id": A_UUID}, "ttl": ttl})
    assert err.to_json() == {
        "code": 11,
        "name": "invalid options",
        "message": "invalid option (ttl: must be an integer between 0 and 100000000)",
        "options": {"ttl": "must be an integer between 0 and 100000000"},
    }


def test_ttl_on_other_entities_is_unknown() -> None:
    assert errors_of(CONSUMERS, {"username": "x", "ttl": 5}) == {"ttl": "unknown field"}


def test_output_ttl() -> None:
    row = row_of(KEYAUTH_CREDENTIALS, {"consumer": {"id": A_UUID}, "key": "k"})
    assert "ttl" not in to_output(KEYAUTH_CREDENTIALS, row)
    assert to_output(KEYAUTH_CREDENTIALS, {**row, "ttl": 42})["ttl"] == 42
    assert to_output(KEYAUTH_CREDENTIALS, {**row, "expires_at": NOW + 30}, now=NOW + 10)["ttl"] == 20
    assert to_output(KEYAUTH_CREDENTIALS, {**row, "expires_at": NOW + 30}, now=NOW + 40)["ttl"] == 0
    # non-ttl entities never show it
    consumer = row_of(CONSUMERS, {"username": "u"})
    assert "ttl" not in to_output(CONSUMERS, {**consumer, "ttl": 5})


def test_patch_of_a_stored_credential_with_ttl() -> None:
    stored = {**row_of(KEYAUTH_CREDENTIALS, {"consumer": {"id": A_UUID}, "key": "k"}), "ttl": 30}
    row = row_of(KEYAUTH_CREDENTIALS, {"key": "k2"}, op="update", existing=stored)
    assert row["key"] == "k2" and "ttl" not in row and row["created_at"] == NOW
    assert row_of(KEYAUTH_CREDENTIALS, {"ttl": 10}, op="update", existing=stored)["ttl"] == 10
