"""CloudAdmin: an async client for the emulator's admin endpoints (and account device listing).

::

    async with CloudAdmin(cloud.url, cloud.ca_file, cloud.admin_token) as admin:
        await admin.import_units(Path("cloud-import.json"))
        await admin.add_account("alice", "correct horse")
        await admin.set_supply_chain("SN0001", "alice")
        await admin.list_devices("alice", "correct horse")
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp

from ...dial import http_connector
from ...lifecycle import Component
from .emulator import ADMIN_HEADER
from .errors import CloudApiError
from .tls import client_context

__all__ = ["CloudAdmin", "basic_auth"]


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic (UTF-8, RFC 7617)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class CloudAdmin(Component):
    """An HTTPS session to the emulator that trusts only ``ca_file``.

    Every method raises :class:`CloudApiError` when the emulator answers with an error (its
    ``status`` and ``error`` name), and ``aiohttp.ClientError`` / ``OSError`` when it cannot be
    reached.
    """

    def __init__(self, url: str, ca_file: Path, admin_token: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.ca_file = Path(ca_file)
        self._admin_token = admin_token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"CloudAdmin({self.url!r})"

    async def start(self) -> None:
        connector = http_connector(ssl=client_context(self.ca_file))
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def import_units(self, data: dict[str, Any] | Path) -> int:
        """Import the factory's cloud-import file (a dict or a path); returns the unit count.

        Raises:
            OSError, ValueError: the file cannot be read or is not JSON.
        """
        # A small local file: reading it blocks the loop for microseconds.
        body = json.loads(Path(data).read_text()) if isinstance(data, Path) else data  # noqa: ASYNC240
        return int((await self._request("POST", "/v1/units/import", json=body))["imported"])

    async def add_account(self, name: str, password: str) -> None:
        await self._request("POST", "/v1/accounts", json={"name": name, "password": password})

    async def set_supply_chain(self, serial: str, account: str) -> None:
        await self._request("POST", "/v1/supply-chain", json={"serial": serial, "account": account})

    async def list_devices(self, account: str, password: str) -> list[dict[str, Any]]:
        """The devices bound to ``account`` (authenticated as the account, not as admin)."""
        result = await self._request(
            "GET",
            f"/v1/accounts/{account}/devices",
            admin=False,
            headers={"Authorization": basic_auth(account, password)},
        )
        assert isinstance(result, list)
        return result

    async def _request(self, method: str, path: str, *, admin: bool = True, **kwargs: Any) -> Any:
        if self._session is None:
            raise RuntimeError("use CloudAdmin as an async context manager")
        headers = {ADMIN_HEADER: self._admin_token} if admin else {}
        headers.update(kwargs.pop("headers", {}))
        async with self._session.request(
            method, self.url + path, headers=headers, **kwargs
        ) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            if resp.status >= 400:
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    raise CloudApiError(resp.status, body["error"], str(body.get("detail", "")))
                raise CloudApiError(resp.status, "http_error", resp.reason or "")
            return body
