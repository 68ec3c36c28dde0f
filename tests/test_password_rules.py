"""What a new password must be (issue 21, ``smart_auth.password_rules``): long enough,
not a very common one, not the username, not one repeated character; on the activation
page (over HTTP, every store) and in the operator's commands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smart_auth.admin import AdminError, create_invitation, create_user
from smart_auth.password_rules import password_problem
from tests.conftest import STORES, storage_url
from tests.security_support import app_on
from tests.smart_support import BASE, PASSWORD, Env
from tests.test_smart_pages import activate


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("short", "at least 8"),
        ("password", "most common"),
        ("Password123", "most common"),
        ("QWERTY123", "most common"),
        ("111111111", "most common"),
        ("zzzzzzzzzz", "repeated"),
        ("alice.smith", "username"),
        ("x" * 1025, "at most 1024"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, words: str) -> None:
    problem = password_problem(password, "Alice.Smith")
    assert problem is not None and words in problem


@pytest.mark.parametrize("password", [PASSWORD, "Tr0ub4dor&3x", "my cat likes tuna"])
def test_other_passwords_pass(password: str) -> None:
    assert password_problem(password, "alice") is None


def test_the_operator_cannot_set_a_common_password(tmp_path: Path) -> None:
    from smart_auth.store import open_auth_store

    store = open_auth_store(f"sqlite:///{tmp_path / 'f.sqlite3'}")
    try:
        with pytest.raises(AdminError, match="most common"):
            create_user(store, "drwho", "letmein1", "Practitioner/dr")
        assert store.find_user("drwho") is None
    finally:
        store.close()


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path)) as env:
        yield env


async def test_activation_refuses_a_common_password(env: Env) -> None:
    invitation = create_invitation(env.store, "Patient/p1", server_url=BASE)
    refused = await activate(env, invitation["code"], "alice", "iloveyou1")
    assert refused.status_code == 400
    assert "most common" in refused.text
    assert env.store.find_user("alice") is None
    created = await activate(env, invitation["code"], "alice")
    assert created.status_code == 201
