"""Cloud emulator fixtures: a test factory PKI (root -> issuing -> device certificates, P-256),
the emulator on loopback with an injected clock, an admin client, and a device-side HTTPS client
that presents a device certificate (or none)."""

from __future__ import annotations

import hashlib
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from device_sim.apps.cloud import CloudAdmin, CloudEmulator
from device_sim.apps.cloud.tls import client_context

NOW = datetime(2030, 1, 1, tzinfo=UTC).timestamp()  # the injected clock's start
PASSWORD = "account-password-1"


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _ca(name: str, parent: Ca | None) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if parent is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(parent.key if parent else key, hashes.SHA256())
    )
    return Ca(key, cert)


@dataclass
class Device:
    serial: str
    device_id: str
    cert_file: Path
    key_file: Path
    fingerprint: str
    claim_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def unit(self, expires: float = NOW + 86400) -> dict[str, Any]:
        """This device's entry in the factory's cloud-import file."""
        return {
            "serial": self.serial,
            "device_id": self.device_id,
            "cert_fingerprint_sha256": self.fingerprint,
            "claim_token_sha256": hashlib.sha256(self.claim_token.encode()).hexdigest(),
            "claim_expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
        }


class Factory:
    """A test factory: root CA, issuing CA, device certificates signed by the issuing CA."""

    def __init__(self, directory: Path, name: str = "Test Factory") -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.root = _ca(f"{name} Root", None)
        self.issuing = _ca(f"{name} Issuing", self.root)
        self.chain_file = directory / "chain.pem"
        self.chain_file.write_bytes(self.issuing.pem + self.root.pem)

    def device(self, serial: str, device_id: str | None = None) -> Device:
        device_id = device_id or secrets.token_hex(8)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, device_id),
                        x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
                    ]
                )
            )
            .issuer_name(self.issuing.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.issuing.key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        cert_file, key_file = self.dir / f"{serial}.pem", self.dir / f"{serial}.key"
        # The device presents its certificate and the issuing CA (the root is the anchor).
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.issuing.pem)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Device(serial, device_id, cert_file, key_file, hashlib.sha256(der).hexdigest())


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Factory:
    return Factory(tmp_path_factory.mktemp("factory"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def cloud(tmp_path: Path, factory: Factory, clock: Clock) -> AsyncIterator[CloudEmulator]:
    async with CloudEmulator(
        tmp_path / "cloud", factory_chain=factory.chain_file, clock=clock
    ) as emulator:
        yield emulator


@pytest_asyncio.fixture
async def admin(cloud: CloudEmulator) -> AsyncIterator[CloudAdmin]:
    async with CloudAdmin(cloud.url, cloud.ca_file, cloud.admin_token) as client:
        yield client


class DeviceClient:
    """Talks to the emulator as a device: trusts its CA, presents ``device``'s cert if given."""

    def __init__(self, cloud: CloudEmulator) -> None:
        self.cloud = cloud

    def context(self, device: Device | None) -> ssl.SSLContext:
        if device is None:
            return client_context(self.cloud.ca_file)
        return client_context(self.cloud.ca_file, device.cert_file, device.key_file)

    async def request(
        self, method: str, path: str, *, device: Device | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        connector = aiohttp.TCPConnector(ssl=self.context(device), force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(method, self.cloud.url + path, **kwargs) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    async def activate(
        self, device: Device | None, body: dict[str, Any], *, cert: bool = True
    ) -> tuple[int, Any]:
        return await self.request(
            "POST", "/v1/activate", json=body, device=device if cert else None
        )

    async def self_(self, token: str) -> tuple[int, Any]:
        return await self.request(
            "GET", "/v1/devices/self", headers={"Authorization": f"Bearer {token}"}
        )


@pytest.fixture
def dev(cloud: CloudEmulator) -> DeviceClient:
    return DeviceClient(cloud)


def body(device: Device, mode: str, request_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """An activation body for ``device`` (a fresh request_id unless given)."""
    return {
        "mode": mode,
        "request_id": request_id or secrets.token_hex(8),
        "device_id": device.device_id,
        "after_reset": False,
        **extra,
    }
