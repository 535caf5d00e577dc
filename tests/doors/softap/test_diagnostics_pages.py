"""DIAGNOSTICS_REQUEST over a session, in-process: a bundle larger than one message is read
page by page, and bad requests get their codes."""

from __future__ import annotations

import os

import pytest

from device_sim.client.target import Target
from device_sim.codes import Code, MessageType
from device_sim.doors.native.client import ClientSession
from device_sim.doors.native.flow import fetch_diagnostics
from device_sim.doors.native.http_link import HttpLink
from device_sim.doors.native.session import DIAGNOSTICS_CHUNK
from device_sim.errors import OnboardingError
from device_sim.security.secret import Secret

from .conftest import SETUP_CODE, StackFactory


async def test_a_large_bundle_comes_page_by_page(make_stack: StackFactory) -> None:
    stack = await make_stack()
    bundle = os.urandom(DIAGNOSTICS_CHUNK * 3 + 123)
    made = []

    async def make() -> bytes:
        made.append(1)
        return bundle

    stack.service.serve_diagnostics(make)
    got = await fetch_diagnostics(stack.profile, Target(softap_url=stack.url), Secret(SETUP_CODE))
    assert got == bundle and made == [1]  # built once for the session, read in 4 pages


async def test_bad_pages_and_no_maker(make_stack: StackFactory) -> None:
    stack = await make_stack()
    async with HttpLink(stack.profile, stack.url) as link:
        session = ClientSession(link, timeout=10)
        await session.open(Secret(SETUP_CODE))
        with pytest.raises(OnboardingError) as info:
            await session.call(MessageType.DIAGNOSTICS_REQUEST, {"offset": 0})
        assert info.value.code is Code.INVALID_STATE  # this stack has no maker
        stack.service.serve_diagnostics(lambda: _async(b"abc"))
        for bad in ({"offset": -1}, {"offset": "0"}, {"offset": 0, "x": 1}, {"offset": 99}):
            with pytest.raises(OnboardingError) as info:
                await session.call(MessageType.DIAGNOSTICS_REQUEST, bad)
            assert info.value.code is Code.MALFORMED_REQUEST, bad
        kind, page = await session.call(MessageType.DIAGNOSTICS_REQUEST, {"offset": 0})
        assert (kind, page["size"], page["offset"]) == (MessageType.DIAGNOSTICS, 3, 0)


async def _async(value: bytes) -> bytes:
    return value
