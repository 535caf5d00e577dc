"""TLS: the emulator's own CA and server certificate, and how client certificates are checked."""

from __future__ import annotations

import logging
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from device_sim.apps.cloud import CloudAdmin, CloudEmulator
from device_sim.apps.cloud.tls import client_context, ensure_server_pki
from device_sim.errors import ConfigError

from .conftest import PASSWORD, DeviceClient, Factory, body


async def test_state_dir_files_and_modes(cloud: CloudEmulator) -> None:
    state = cloud.state_dir
    for name in ("server-ca.key", "server.key", "admin-token", "cloud.sqlite3"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert cloud.ca_file == state / "server-ca.pem"
    assert cloud.url.startswith("https://localhost:")
    cert = x509.load_pem_x509_certificate((state / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


async def test_server_reachable_by_ip_san(cloud: CloudEmulator) -> None:
    url = cloud.url.replace("localhost", "127.0.0.1")
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_context(cloud.ca_file))
        ) as session,
        session.get(url + "/v1/devices/self") as resp,
    ):
        assert resp.status == 401


async def test_restart_reuses_ca_admin_token_and_data(tmp_path: Path, factory: Factory) -> None:
    state = tmp_path / "cloud"
    async with CloudEmulator(state, factory_chain=factory.chain_file) as first:
        ca, token = first.ca_file.read_bytes(), first.admin_token
        async with CloudAdmin(first.url, first.ca_file, token) as admin:
            await admin.add_account("alice", PASSWORD)
    async with CloudEmulator(state, factory_chain=factory.chain_file) as second:
        assert second.ca_file.read_bytes() == ca
        assert second.admin_token == token
        async with CloudAdmin(second.url, second.ca_file, token) as admin:
            assert await admin.list_devices("alice", PASSWORD) == []


def test_server_certificate_reissued_for_new_names(tmp_path: Path) -> None:
    first = ensure_server_pki(tmp_path)
    ca, leaf = first.ca_file.read_bytes(), first.cert_file.read_bytes()
    assert ensure_server_pki(tmp_path).cert_file.read_bytes() == leaf
    again = ensure_server_pki(tmp_path, ("localhost", "127.0.0.1", "192.0.2.7"))
    assert again.ca_file.read_bytes() == ca
    assert again.cert_file.read_bytes() != leaf


async def test_bad_factory_chain_refused(tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="factory chain"):
        async with CloudEmulator(tmp_path / "cloud", factory_chain=chain):
            pass


async def test_zero_touch_without_client_cert_is_rejected_by_handler(
    dev: DeviceClient, admin: CloudAdmin, factory: Factory
) -> None:
    device = factory.device("SN-NOCERT")
    await admin.import_units({"units": [device.unit()]})
    await admin.add_account("alice", PASSWORD)
    await admin.set_supply_chain(device.serial, "alice")
    status, answer = await dev.activate(device, body(device, "zero-touch"), cert=False)
    assert (status, answer["error"]) == (403, "activation_rejected")
    assert "client certificate" in answer["detail"]


@pytest.mark.parametrize("tls_version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_cert_from_another_ca_fails_the_tls_handshake(
    dev: DeviceClient,
    admin: CloudAdmin,
    factory: Factory,
    tmp_path: Path,
    tls_version: ssl.TLSVersion,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler never sees such a request: the server's TLS layer aborts the handshake. With
    TLS 1.3 the client has already finished its side, so it learns this on its first read (in
    practice a connection reset); with TLS 1.2 the client's handshake itself fails."""
    device = factory.device("SN-FORGED")
    forged = Factory(tmp_path / "other", "Counterfeit").device("SN-FORGED", device.device_id)
    await admin.import_units({"units": [device.unit()]})
    await admin.add_account("alice", PASSWORD)
    await admin.set_supply_chain(device.serial, "alice")
    context = dev.context(forged)
    context.maximum_version = tls_version
    caplog.set_level(logging.INFO, logger="device_sim.apps.cloud")
    with pytest.raises(aiohttp.ClientError) as caught:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, force_close=True)
        ) as session:
            await session.post(dev.cloud.url + "/v1/activate", json=body(device, "zero-touch"))
    if tls_version == ssl.TLSVersion.TLSv1_2:  # fails while connecting: an alert or a reset
        assert isinstance(caught.value, aiohttp.ClientConnectorError)
    else:  # connected, then reset (or an alert / a disconnect) when reading the answer
        assert isinstance(caught.value, aiohttp.ClientConnectionError)
    assert not any("activation" in r.getMessage() for r in caplog.records)
    assert await admin.list_devices("alice", PASSWORD) == []


async def test_without_factory_chain_no_client_cert_is_accepted(
    tmp_path: Path, factory: Factory
) -> None:
    device = factory.device("SN-NOCHAIN")
    async with CloudEmulator(tmp_path / "cloud") as cloud:
        async with CloudAdmin(cloud.url, cloud.ca_file, cloud.admin_token) as admin:
            await admin.import_units({"units": [device.unit()]})
            await admin.add_account("alice", PASSWORD)
            await admin.set_supply_chain(device.serial, "alice")
        status, answer = await DeviceClient(cloud).activate(device, body(device, "zero-touch"))
    assert (status, answer["error"]) == (403, "activation_rejected")
