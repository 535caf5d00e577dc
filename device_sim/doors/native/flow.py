"""The native personality's phone side: find a device, open a session, list networks, provision.

Over BLE (bleak; the default) or over the SoftAP door's HTTP API (``Target.softap_url``): the
same handshake, requests, events and JSON result.

``provision`` returns a JSON-ready result with the final state and code (with the profile's
user message and next step), per-phase timings in milliseconds and the GATT round trips used.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from typing import Any

from ...client.target import (
    TERMINAL,
    Attempts,
    Clock,
    Credentials,
    EapSettings,
    Progress,
    ProvisionRequest,
    Target,
    describe,
)
from ...codes import Code, MessageType
from ...errors import ConfigError, DeviceSimError, DeviceUnreachable, OnboardingError, SetupError
from ...profile import Profile
from ...security.secret import Secret
from .client import BleLink, ClientSession, FoundDevice, discover
from .http_link import HttpLink
from .session import FILE_CHUNK, FILE_NAMES

LOG = logging.getLogger(__name__)


END_SESSION_TIMEOUT_S = 3.0  # a polite goodbye, bounded: the device may be gone
LINK_CLOSE_TIMEOUT_S = 2.0  # bleak's disconnect when BlueZ or the bus went away


async def find_device(profile: Profile, target: Target) -> FoundDevice:
    """The first provisioning device seen (or the one named). Raises OnboardingError."""
    devices = await discover(
        profile,
        adapter=target.adapter,
        timeout=target.discover_timeout,
        name=target.name,
        first=True,
        radio=target.radio,
    )
    if not devices:
        named = f" named {target.name!r}" if target.name else ""
        raise DeviceUnreachable(
            f"no provisioning device{named} seen on {target.adapter} in "
            f"{target.discover_timeout:g} s",
            code=Code.DEVICE_NOT_FOUND,
        )
    return devices[0]


class Provisioner:
    """One connection and secure session to a device, for one or more provisioning attempts.

    An app keeps the session open after a failure and lets the user retry (new passphrase,
    another network) without reconnecting: ``attempt`` may be called again after a failure.
    """

    def __init__(
        self,
        profile: Profile,
        target: Target,
        setup_code: Secret,
        *,
        on_progress: Progress | None = None,
        bundle: bool = False,
    ) -> None:
        """``bundle``: a device of revision 2 opens its session with the first
        :meth:`attempt`, the credentials and CONNECT sealed in the proof's message (two round
        trips); otherwise the session opens on entry."""
        self.bundle = bundle
        self.profile = profile
        self.target = target
        self.setup_code = setup_code
        self.progress = on_progress or (lambda phase, info: None)
        self.clock = Clock()
        self.link: BleLink | HttpLink | None = None
        self.session: ClientSession | None = None
        self.device: dict[str, Any] | None = None
        self.bundles = False  # credentials and CONNECT go with the proof (2 round trips)
        self.found_revision = 1

    async def __aenter__(self) -> Provisioner:
        """Discover, connect and open the session.

        Raises OnboardingError (DeviceUnreachable when no device answers) or SetupError.
        """
        link: BleLink | HttpLink
        if self.target.softap_url:
            self.clock.mark("discover")  # the phone joined the device's AP: nothing to scan
            self.progress("connect", {"url": self.target.softap_url})
            http_link = HttpLink(self.profile, self.target.softap_url)
            await http_link.__aenter__()
            link = http_link
            self.device = {
                "transport": "softap",
                "url": http_link.ap_url,
                "lan_url": http_link.lan_url,
                "id": http_link.info.get("id"),
                "name": http_link.info.get("ssid"),
            }
        else:
            self.progress("discover", {"adapter": self.target.adapter})
            found = await find_device(self.profile, self.target)
            self.found_revision = found.info.protocol_version if found.info else 1
            self.clock.mark("discover")
            self.device = {"transport": "ble", **found.to_json()}
            self.progress("connect", {"address": found.device.address, "name": found.name})
            ble_link = BleLink(
                self.profile,
                found.device,
                adapter=self.target.adapter,
                fragment_size=self.target.fragment_size,
                radio=self.target.radio,
            )
            await ble_link.__aenter__()
            link = ble_link
        self.link = link
        self.clock.mark("connect")
        self.session = ClientSession(self.link)
        # A revision-2 device (its advertisement, its /api/v1/info) takes the credentials and
        # CONNECT sealed in the proof's message: the session opens with the first attempt.
        self.bundles = self.bundle and self.revision >= 2
        if not self.bundles:
            await self.open()
        return self

    @property
    def revision(self) -> int:
        """The device's protocol revision as it announced it (1 when it said nothing)."""
        if isinstance(self.link, HttpLink):
            rev = self.link.info.get("rev", 1)
            return rev if isinstance(rev, int) else 1
        return self.found_revision

    async def open(
        self, bundle: list[tuple[MessageType, dict[str, Any]]] | None = None
    ) -> list[tuple[MessageType, dict[str, Any]]]:
        """Open the session (now, if not open yet), sending ``bundle`` with the proof."""
        assert self.session is not None and self.link is not None
        if self.session.channel is not None:
            return []
        try:
            self.progress("session", {})
            answers = await self.session.open(self.setup_code, bundle or ())
            self.clock.mark("session")
            return answers
        except BaseException:
            await self.link.__aexit__(None, None, None)
            self.link = None
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self.link is None:
            return
        interrupted = exc_type is not None and issubclass(
            exc_type, (asyncio.CancelledError, KeyboardInterrupt)
        )
        # Interrupted (Ctrl-C): leave at once; the device frees the session on disconnect.
        if not interrupted and self.session is not None and self.session.channel is not None:
            try:
                async with asyncio.timeout(END_SESSION_TIMEOUT_S):
                    await self.session.call(MessageType.END_SESSION, {})
            except Exception:
                LOG.debug(
                    "END_SESSION not delivered; the device frees the session on "
                    "disconnect or idle timeout"
                )
        try:
            async with asyncio.timeout(LINK_CLOSE_TIMEOUT_S):
                await self.link.__aexit__(None, None, None)
        except TimeoutError:
            LOG.debug("the link did not close within %s s", LINK_CLOSE_TIMEOUT_S)

    async def attempt(
        self,
        ssid: bytes,
        passphrase: Secret | None,
        *,
        hidden: bool = False,
        security: str | None = None,
        eap: EapSettings | None = None,
        outcome_timeout: float = 120.0,
        activation: dict[str, Secret | str | None] | None = None,
    ) -> dict[str, Any]:
        """Send credentials, CONNECT, follow events to online/failed. Raises OnboardingError.

        ``security`` (``wpa3-sae``, ``owe``...): the network's mode, sent only when given.
        ``eap``: an enterprise network's sign-in; its certificates and key go first, as
        CREDENTIAL_FILE parts in the open session (revision 4).

        ``activation`` ({account, claim_token, device_password}; {} for zero-touch) is sent as
        SET_ACTIVATION before CONNECT, and the device's activation status (never a token) is
        read back into the result."""
        assert self.session is not None
        if security is not None and self.revision < 3:
            raise ConfigError(
                "--security",
                f"the device speaks protocol revision {self.revision}; the security field "
                "needs revision 3 (leave it out: the device reads the scan, or tries WPA3 "
                "then WPA2 for a hidden network)",
            )
        if eap is not None and self.revision < 4:
            raise ConfigError(
                "--eap-method",
                f"the device speaks protocol revision {self.revision}; enterprise settings need "
                "revision 4",
            )
        events: list[dict[str, Any]] = []
        self.progress("credentials", {})
        files, eap_body = eap_wire(eap) if eap is not None else ([], None)
        if files:  # the files first, part by part, in the session (never in the proof bundle)
            await self.open()
            for name, data in files:
                await self._send_file(name, data)
        requests: list[tuple[MessageType, dict[str, Any]]] = [
            (
                MessageType.SET_CREDENTIALS,
                {
                    "ssid_hex": ssid.hex(),
                    "hidden": hidden,
                    "passphrase": passphrase.reveal() if passphrase else None,
                    **({"security": security} if security is not None else {}),
                    **({"eap": eap_body} if eap_body is not None else {}),
                },
            )
        ]
        if activation is not None:
            requests.append(
                (
                    MessageType.SET_ACTIVATION,
                    {
                        k: v.reveal() if isinstance(v, Secret) else v
                        for k, v in activation.items()
                        if v is not None
                    },
                )
            )
        requests.append((MessageType.CONNECT, {}))
        if self.session.channel is None:  # the proof bundle: everything in one message
            await self.open(requests)
            self.clock.mark("credentials")
        else:
            for request, body in requests:
                if request is MessageType.CONNECT:
                    self.clock.mark("credentials")
                await self.session.call(request, body)
        final = await _follow(self.session, self.clock, events, self.progress, outcome_timeout)
        outcome = {
            "state": final["state"],
            **describe(self.profile, final["code"]),
            "detail": final.get("detail", ""),
            "events": events,
        }
        if activation is not None:
            _, status = await self.session.call(MessageType.STATUS_REQUEST, {})
            outcome["activation"] = status.get("activation")
        return outcome

    async def _send_file(self, name: str, data: bytes) -> None:
        """One certificate or key as CREDENTIAL_FILE parts; the device acknowledges each."""
        assert self.session is not None
        for offset in range(0, len(data), FILE_CHUNK):
            chunk = data[offset : offset + FILE_CHUNK]
            kind, answer = await self.session.call(
                MessageType.CREDENTIAL_FILE,
                {
                    "name": name,
                    "size": len(data),
                    "offset": offset,
                    "chunk_b64": base64.b64encode(chunk).decode("ascii"),
                },
            )
            if kind is not MessageType.ACK or answer.get("received") != offset + len(chunk):
                raise DeviceUnreachable(f"the device answered CREDENTIAL_FILE {name} out of order")

    def result(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The JSON result: outcome + device + timings + GATT round trips."""
        return {
            "device": self.device,
            "events": [],
            **outcome,
            "timings_ms": {
                **{
                    p: self.clock.marks.get(p)
                    for p in ("discover", "connect", "session", "credentials", "join", "verify")
                },
                "total": self.clock.total(),
            },
            "transport": self.target.transport,
            # request/response round trips on the transport (GATT or HTTP)
            "gatt_round_trips": self.link.round_trips if self.link else 0,
            "gatt_writes": self.link.writes if self.link else 0,
        }

    def restart_clock(self) -> None:
        """Time the next attempt on its own (the session is already open)."""
        self.clock = Clock()


def eap_wire(eap: EapSettings) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """SET_CREDENTIALS' ``eap`` object for ``eap``, and the files to send before it (each
    named in the object by its SHA-256)."""
    body = eap.to_json()
    files: list[tuple[str, bytes]] = []
    for name in FILE_NAMES:
        if name in body:
            data = body[name].encode("ascii")
            files.append((name, data))
            body[name] = hashlib.sha256(data).hexdigest()
    return files, body


async def list_networks(
    profile: Profile, target: Target, setup_code: Secret
) -> list[dict[str, Any]]:
    """The device's Wi-Fi scan list.

    Raises OnboardingError (DeviceUnreachable when no device answers) or SetupError.
    """
    async with Provisioner(profile, target, setup_code) as prov:
        assert prov.session is not None
        _, body = await prov.session.call(MessageType.SCAN_REQUEST, {})
        return list(body["networks"])


async def saved_networks(profile: Profile, target: Target, setup_code: Secret) -> dict[str, Any]:
    """The device's saved networks, most recent first: ``{networks, max}`` (no passphrase).

    Raises OnboardingError (DeviceUnreachable, the device's refusal) or SetupError."""
    async with Provisioner(profile, target, setup_code) as prov:
        assert prov.session is not None
        kind, body = await prov.session.call(MessageType.LIST_NETWORKS, {})
        if kind is not MessageType.NETWORKS:
            raise DeviceUnreachable(f"the device answered LIST_NETWORKS with {kind.name}")
        return {"networks": list(body["networks"]), "max": body.get("max")}


async def forget_network(
    profile: Profile, target: Target, setup_code: Secret, ssid: bytes
) -> dict[str, Any]:
    """Make the device forget one saved network; what is saved afterwards.

    Raises OnboardingError (INVALID_STATE: not saved, or the one it is online on) or
    SetupError."""
    async with Provisioner(profile, target, setup_code) as prov:
        assert prov.session is not None
        await prov.session.call(MessageType.FORGET_NETWORK, {"ssid_hex": ssid.hex()})
        _, body = await prov.session.call(MessageType.LIST_NETWORKS, {})
        return {"forgotten": ssid.hex(), "networks": list(body["networks"])}


async def fetch_diagnostics(profile: Profile, target: Target, setup_code: Secret) -> bytes:
    """The device's diagnostics bundle (a gzip'd tar), read page by page over a session.

    Raises OnboardingError (DeviceUnreachable, the device's refusal) or SetupError."""
    async with Provisioner(profile, target, setup_code) as prov:
        assert prov.session is not None
        data = bytearray()
        size = None
        while size is None or len(data) < size:
            kind, page = await prov.session.call(
                MessageType.DIAGNOSTICS_REQUEST, {"offset": len(data)}
            )
            if kind is not MessageType.DIAGNOSTICS or page.get("offset") != len(data):
                raise DeviceUnreachable("the device answered DIAGNOSTICS_REQUEST out of order")
            chunk = base64.b64decode(page["chunk_b64"])
            size = int(page["size"])
            if not chunk and len(data) < size:
                raise DeviceUnreachable("the device sent an empty page of the bundle")
            data += chunk
        return bytes(data)


async def failure_result(
    profile: Profile, exc: DeviceSimError, prov: Provisioner | None
) -> dict[str, Any]:
    outcome: dict[str, Any] = {"state": None, **describe(profile, exc.code), "detail": exc.detail}
    if isinstance(exc, OnboardingError) and exc.retry_after_ms:
        outcome["retry_after_ms"] = exc.retry_after_ms
    if prov is not None and prov.link is not None:
        outcome["state"] = await _public_state(prov.link)
    return (
        prov.result(outcome)
        if prov is not None
        else {**outcome, "device": None, "events": [], "timings_ms": {}, "gatt_round_trips": 0}
    )


async def provision(
    profile: Profile,
    target: Target,
    *,
    setup_code: Secret,
    ssid: bytes,
    passphrase: Secret | None,
    hidden: bool = False,
    security: str | None = None,
    eap: EapSettings | None = None,
    outcome_timeout: float = 120.0,
    on_progress: Progress | None = None,
    retries: list[tuple[bytes, Secret | None, bool]] | None = None,
    activation: dict[str, Secret | str | None] | None = None,
) -> dict[str, Any]:
    """Run the whole onboarding; never raises for device-reported failures (they are the result).

    ``retries``: further (ssid, passphrase, hidden) to try in the same session after a failure.
    With retries the result has ``attempts`` (each attempt's outcome), the last one on top.
    """
    prov = Provisioner(profile, target, setup_code, on_progress=on_progress, bundle=True)
    attempts = Attempts((ssid, passphrase, hidden), retries or ())

    async def attempt(creds: Credentials) -> dict[str, Any]:
        outcome = await prov.attempt(
            creds[0],
            creds[1],
            hidden=creds[2],
            security=security if creds[0] == ssid else None,
            eap=eap if creds[0] == ssid else None,
            outcome_timeout=outcome_timeout,
            activation=activation,
        )
        return prov.result(outcome)

    try:
        async with prov:
            await attempts.run(attempt)
    except SetupError:  # this machine's problem (no bus, no adapter): the caller reports it
        raise
    except DeviceSimError as exc:
        attempts.add(await failure_result(profile, exc, prov))
    return attempts.result()


async def _follow(
    session: ClientSession,
    clock: Clock,
    events: list[dict[str, Any]],
    progress: Progress,
    timeout: float,
) -> dict[str, Any]:
    """Consume pushed events until the device reaches online or failed."""
    deadline = time.monotonic() + timeout
    joined = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeviceUnreachable(f"no outcome from the device within {timeout:g} s")
        try:
            event = await session.next_event(remaining)
        except TimeoutError:  # the device went silent (e.g. it lost power)
            raise DeviceUnreachable(
                f"the device went silent: no outcome within {timeout:g} s"
            ) from None
        events.append(event)
        progress("event", event)
        if event["state"] == "verifying" and not joined:
            clock.mark("join")
            joined = True
        if event["state"] in TERMINAL and event["phase"] in TERMINAL:
            clock.mark("verify" if joined else "join")
            return event


async def _public_state(link: BleLink | HttpLink) -> str | None:
    try:
        return (await link.read_state()).state.wire_name
    except Exception:
        return None


async def provision_request(
    profile: Profile,
    target: Target,
    request: ProvisionRequest,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """:func:`provision` for the door registry's uniform phone-side call."""
    if request.setup_code is None:
        raise ConfigError("--setup-code", "required (the code on the device label)")
    return await provision(
        profile,
        target,
        setup_code=request.setup_code,
        ssid=request.ssid,
        passphrase=request.passphrase,
        hidden=request.hidden,
        security=request.security,
        eap=request.eap,
        outcome_timeout=request.outcome_timeout,
        on_progress=on_progress,
        retries=list(request.retries) or None,
        activation=request.activation,
    )
