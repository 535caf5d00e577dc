"""Verification: NetworkManager's connectivity check, then real DNS and TLS checks on loopback."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from device_sim.codes import Code
from device_sim.core.store import DeviceStore
from device_sim.errors import NetworkError
from device_sim.network.nm.backend import STORE_KEY, NetworkManagerBackend
from device_sim.network.nm.defs import (
    ERR_NM_PERMISSION_DENIED,
    MANAGER_IFACE,
    MANAGER_PATH,
    Connectivity,
)
from device_sim.network.simulated import CertificateAuthority
from device_sim.testing.nm_mock import NMMock

from .conftest import CLOUD, Cloud, MakeBackend

PASS = "correct-horse-battery"


def _phases() -> tuple[list[str], Any]:
    seen: list[str] = []
    return seen, lambda phase, detail: seen.append(phase)


async def test_verify_checks_and_then_saves(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, store: DeviceStore
) -> None:
    await backend.join(b"Home", PASS)
    seen, on_phase = _phases()
    await backend.verify(on_phase=on_phase)
    assert seen == ["captive_portal", "internet", "dns", "tls"]
    [path] = await nm.connections()
    assert (await nm.connection(path))["unsaved"] is False
    [entry] = json.loads(store.setting(STORE_KEY) or "[]")
    assert entry["saved"] is True


@pytest.mark.parametrize(
    ("connectivity", "code", "last_phase"),
    [
        (Connectivity.PORTAL, Code.CAPTIVE_PORTAL, "captive_portal"),
        (Connectivity.LIMITED, Code.NO_INTERNET, "internet"),
        (Connectivity.NONE, Code.NO_INTERNET, "internet"),
    ],
)
async def test_connectivity_failures_keep_the_profile_unsaved(
    nm: NMMock,
    wifi: str,
    backend: NetworkManagerBackend,
    connectivity: Connectivity,
    code: Code,
    last_phase: str,
) -> None:
    await backend.join(b"Home", PASS)
    await nm.set_connectivity(connectivity)
    seen, on_phase = _phases()
    with pytest.raises(NetworkError) as caught:
        await backend.verify(on_phase=on_phase)
    assert caught.value.code is code
    assert caught.value.raw["nm_connectivity"] == connectivity.name
    assert seen[-1] == last_phase
    [path] = await nm.connections()
    assert (await nm.connection(path))["unsaved"] is True
    await backend.disconnect()  # what the engine does after a failure
    assert await nm.connections() == []


async def test_unknown_connectivity_relies_on_dns_and_tls(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await backend.join(b"Home", PASS)
    await nm.set_connectivity(Connectivity.UNKNOWN)
    await backend.verify()
    [path] = await nm.connections()
    assert (await nm.connection(path))["unsaved"] is False


async def test_refused_connectivity_check_uses_the_last_result(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await backend.join(b"Home", PASS)
    await nm.set_connectivity(Connectivity.PORTAL)
    await nm.raise_on(
        MANAGER_PATH,
        MANAGER_IFACE,
        "CheckConnectivity",
        "",
        "u",
        ERR_NM_PERMISSION_DENIED,
        "Not authorized to control networking.",
    )
    with pytest.raises(NetworkError) as caught:
        await backend.verify()
    assert caught.value.code is Code.CAPTIVE_PORTAL


async def test_dns_failure(nm: NMMock, wifi: str, make_backend: MakeBackend) -> None:
    async def broken(host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    backend = await make_backend(resolver=broken, dns_names=["time.example"])
    await backend.join(b"Home", PASS)
    with pytest.raises(NetworkError) as caught:
        await backend.verify()
    assert caught.value.code is Code.DNS_FAILURE and CLOUD in caught.value.detail


async def test_extra_dns_names_are_checked(
    nm: NMMock, wifi: str, make_backend: MakeBackend
) -> None:
    from .conftest import resolver_for

    backend = await make_backend(
        resolver=resolver_for({CLOUD: ["127.0.0.1"]}), dns_names=["missing.example"]
    )
    await backend.join(b"Home", PASS)
    with pytest.raises(NetworkError) as caught:
        await backend.verify()
    assert caught.value.code is Code.DNS_FAILURE and "missing.example" in caught.value.detail


async def test_tls_with_an_untrusted_certificate(
    nm: NMMock, wifi: str, cloud: Cloud, make_backend: MakeBackend
) -> None:
    await cloud.stop()
    await cloud.start(CertificateAuthority("an interceptor").issue(CLOUD))
    backend = await make_backend(cloud_port=cloud.port)
    await backend.join(b"Home", PASS)
    with pytest.raises(NetworkError) as caught:
        await backend.verify()
    assert caught.value.code is Code.TLS_VERIFICATION_FAILED
    [path] = await nm.connections()
    assert (await nm.connection(path))["unsaved"] is True


async def test_verify_without_a_join(wifi: str, backend: NetworkManagerBackend) -> None:
    with pytest.raises(NetworkError) as caught:
        await backend.verify()
    assert caught.value.code is Code.NO_INTERNET


async def test_a_new_onboarding_replaces_the_old_saved_profile(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, store: DeviceStore
) -> None:
    await backend.join(b"Home", PASS)
    await backend.verify()
    await backend.join(b"Home", "a-new-passphrase")
    await backend.verify()
    [path] = await nm.connections()
    assert (await nm.connection(path))["secrets"]["psk"] == "a-new-passphrase"
    assert [e["path"] for e in json.loads(store.setting(STORE_KEY) or "[]")] == [path]


async def test_re_onboarding_to_another_network_keeps_both_as_saved_networks(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, store: DeviceStore
) -> None:
    """One profile per saved network, in the device's order (autoconnect-priority, the most
    recent highest), autoconnect off; dropped when the device forgets it; the user's own
    profile never touched."""
    users = await nm.add_user_connection(b"Office", "the-users-own-one")
    await backend.join(b"Home", PASS)
    await backend.verify()
    await backend.join(b"Cafe", None)
    await backend.verify()
    await backend.keep_networks([b"Cafe", b"Home"])
    ours = {
        bytes((await nm.connection(e["path"]))["settings"]["802-11-wireless"]["ssid"]): (
            await nm.connection(e["path"])
        )
        for e in json.loads(store.setting(STORE_KEY) or "[]")
    }
    assert sorted(ours) == [b"Cafe", b"Home"]
    priority = {
        ssid: c["settings"]["connection"]["autoconnect-priority"] for ssid, c in ours.items()
    }
    assert priority == {b"Cafe": 2, b"Home": 1}
    assert all(c["settings"]["connection"]["autoconnect"] is False for c in ours.values())
    assert ours[b"Home"]["secrets"]["psk"] == PASS  # the update kept the secret
    await backend.keep_networks([b"Cafe"])  # the device forgot Home
    left = [e["path"] for e in json.loads(store.setting(STORE_KEY) or "[]")]
    assert sorted(await nm.connections()) == sorted([users, *left]) and len(left) == 1


async def test_keeping_the_saved_networks_leaves_one_profile_per_network(
    nm: NMMock,
    wifi: str,
    backend: NetworkManagerBackend,
    store: DeviceStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the kill loop on NetworkManager: a run killed between saving a re-onboarding's
    profile and dropping the older one of the same network left two. Keeping the saved
    networks (as the next start does) leaves the newest."""
    from device_sim.network.nm import profiles

    await backend.join(b"Home", PASS)
    await backend.verify()
    await backend.join(b"Home", "a-new-passphrase")

    async def killed(*args: object) -> None:
        raise KeyboardInterrupt  # the daemon dies here (SIGKILL, as far as this run goes)

    monkeypatch.setattr(profiles.Ledger, "discard", killed)
    with pytest.raises(KeyboardInterrupt):
        await backend.verify()
    monkeypatch.undo()
    assert len(await nm.connections()) == 2  # both saved: the state the kill left
    await backend.keep_networks([b"Home"])
    [path] = await nm.connections()
    assert (await nm.connection(path))["secrets"]["psk"] == "a-new-passphrase"
    assert [e["path"] for e in json.loads(store.setting(STORE_KEY) or "[]")] == [path]
