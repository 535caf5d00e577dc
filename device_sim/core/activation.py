"""The device side of cloud activation: after the connectivity checks, bind to an account.

Three modes (the cloud emulator, ``device-sim cloud``, implements the other side):

* ``zero-touch``: the device presents its factory certificate (mutual TLS); the cloud maps it
  through the supply chain to the customer's account;
* ``claim``: the app gives the device the claim token from the label and the user's account
  (SET_ACTIVATION); the device presents both with its certificate;
* ``registration``: the device's pre-programmed fleet registration credential may only create a
  device user; its password comes from the app (``user``) or from the cloud (``cloud``).

Every request carries a ``request_id`` the store records before the request leaves, so a device
killed between the cloud's answer and its local commit repeats the same request after a restart
and gets the same answer (the cloud keeps it): never bound in the cloud but not on the device.
Failures are coded: TLS_VERIFICATION_FAILED, CLOUD_UNREACHABLE, CLOUD_ACTIVATION_REJECTED,
CLAIM_TOKEN_EXPIRED, CLAIM_TOKEN_USED, CLAIMED_BY_ANOTHER_ACCOUNT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ..codes import Code
from ..dial import Resolver, describe_connect_error, http_connector
from ..errors import ConfigError, NetworkError
from ..security.secret import Secret
from .options import ACTIVATION_MODES
from .store import ActivationResult, CloudBinding

LOG = logging.getLogger(__name__)
MODES = ACTIVATION_MODES
_ERRORS = {
    "claim_token_expired": Code.CLAIM_TOKEN_EXPIRED,
    "claim_token_used": Code.CLAIM_TOKEN_USED,
    "claimed_by_another_account": Code.CLAIMED_BY_ANOTHER_ACCOUNT,
}


@dataclass(frozen=True)
class ActivationConfig:
    mode: str
    url: str  # https://host:port of the cloud
    ca_file: Path | None = None  # the cloud's CA (None: the system trust store)
    password_mode: str = "user"  # registration: user | cloud
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("--activation", f"one of {', '.join(MODES)}, not {self.mode!r}")
        if self.password_mode not in ("user", "cloud"):
            raise ConfigError("--activation-password", "user or cloud")


class CloudActivator:
    """Activates one device (its state directory holds the factory key, cert and chain)."""

    def __init__(
        self,
        config: ActivationConfig,
        state_dir: Path,
        device_id: str,
        *,
        resolver: Resolver | None = None,
    ) -> None:
        """``resolver``: how the cloud's host name resolves (default the system's); every
        address it gives is tried (Happy Eyeballs)."""
        self.config = config
        self._resolver = resolver
        self.device_id = device_id
        self.cert, self.key = state_dir / "device.pem", state_dir / "device.key"
        self.chain = state_dir / "chain.pem"
        self.registration_file = state_dir / "registration.json"
        self._context: ssl.SSLContext | None = None
        if config.mode in ("zero-touch", "claim") and not (
            self.cert.exists() and self.key.exists()
        ):
            raise ConfigError(
                str(state_dir),
                f"{config.mode} activation needs the factory "
                "certificate (device.pem, device.key): make the device with "
                "`device-sim factory unit`",
            )
        if config.mode == "registration" and not self.registration_file.exists():
            raise ConfigError(
                str(state_dir),
                "registration activation needs the fleet "
                "registration credential (registration.json) from the factory",
            )

    def _ssl(self) -> ssl.SSLContext:
        """Trusts the cloud's CA; presents the factory certificate when the device has one."""
        if self._context is None:
            ctx = ssl.create_default_context(
                cafile=str(self.config.ca_file) if self.config.ca_file else None
            )
            if self.cert.exists() and self.key.exists():
                ctx.load_cert_chain(str(self.client_chain()), str(self.key))
            self._context = ctx
        return self._context

    def client_chain(self) -> Path:
        """The leaf and its issuing CA in one file, so the cloud can build the path to the
        factory root (ssl loads a certificate chain only from a file)."""
        if not self.chain.exists():
            return self.cert
        combined = self.cert.parent / ".client-chain.pem"
        data = self.cert.read_bytes() + self.chain.read_bytes()
        if not combined.exists() or combined.read_bytes() != data:
            fd = os.open(combined, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        return combined

    def request_body(self, binding: CloudBinding, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "mode": self.config.mode,
            "request_id": request_id,
            "device_id": self.device_id,
            "after_reset": binding.after_reset,
        }
        if binding.in_account:
            body["account"] = binding.in_account
        if self.config.mode == "claim":
            if binding.in_claim_token is None or not binding.in_account:
                raise NetworkError(
                    Code.CLOUD_ACTIVATION_REJECTED,
                    "claim activation needs the account and the label's claim token from the app",
                )
            body["claim_token"] = binding.in_claim_token.reveal()
        if self.config.mode == "registration":
            reg = json.loads(self.registration_file.read_text())
            body["registration"] = {"key_id": reg["key_id"], "secret": reg["secret"]}
            body["password_mode"] = self.config.password_mode
            if self.config.password_mode == "user":
                if binding.in_device_password is None:
                    raise NetworkError(
                        Code.CLOUD_ACTIVATION_REJECTED,
                        "registration with a user-provided password needs it from the app",
                    )
                body["device_password"] = binding.in_device_password.reveal()
        return body

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex

    async def activate(self, binding: CloudBinding, request_id: str) -> ActivationResult:
        """POST /v1/activate. Raises NetworkError with the codes in the module docstring."""
        body = self.request_body(binding, request_id)
        data = await self._post("/v1/activate", body)
        password = data.get("device_password")
        return ActivationResult(
            mode=str(data["mode"]),
            account=str(data["account"]),
            generation=int(data.get("generation", 1)),
            token=Secret(str(data["credentials"]["token"])),
            device_user=data.get("device_user"),
            device_password=Secret(password) if password else None,
        )

    async def release(self, token: Secret) -> None:
        """Tell the cloud the device was reset (best effort: an offline device cannot)."""
        await self._post(
            "/v1/devices/self/release", {}, headers={"Authorization": f"Bearer {token.reveal()}"}
        )

    async def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        url = self.config.url.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(
                    connector=http_connector(self._resolver), timeout=timeout
                ) as http,
                http.post(url, json=body, ssl=self._ssl(), headers=headers or {}) as resp,
            ):
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientConnectorCertificateError as exc:
            raise NetworkError(
                Code.TLS_VERIFICATION_FAILED,
                f"{url}: certificate verification failed ({exc.certificate_error})",
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise NetworkError(Code.TLS_VERIFICATION_FAILED, f"{url}: TLS failed ({exc})") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = (
                f"no answer within {self.config.timeout_s:g} s"
                if isinstance(exc, asyncio.TimeoutError)
                else describe_connect_error(exc)
            )
            raise NetworkError(Code.CLOUD_UNREACHABLE, f"{url}: {reason}") from None
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {}
        if status == 200:
            return dict(data)
        error = str(data.get("error", f"http_{status}"))
        code = _ERRORS.get(error, Code.CLOUD_ACTIVATION_REJECTED)
        if status >= 500:
            code = Code.CLOUD_UNREACHABLE
        raise NetworkError(code, f"cloud answered {status} {error}: {data.get('detail', '')}"[:300])
