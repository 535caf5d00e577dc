"""The ESP personality's protocomm endpoints: :class:`EspEndpoints` answers one endpoint
request of one protocomm session (bytes in, bytes out), whatever carried it
(:class:`~.device.EspPersonality` puts it on the BLE host and the SoftAP door).

The protocol under it is wifi_provisioning's: ``prov-config`` SetConfig stores the network,
ApplyConfig starts the join through the session layer (the device authorized its user with the
protocomm session), GetStatus answers Connecting while the engine works and keeps the outcome
for the next poll; a failed join can be retried in the same session (another SetConfig +
ApplyConfig), ``prov-ctrl`` reset/reprov clear the attempt. ``device-sim-diag`` gives a client
that knows device-sim the specific code, its message and next step.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from ...codes import Code, State
from ...errors import OnboardingError
from ...security.secret import Secret
from ...session.port import AccessPoint, DoorPort
from . import proto
from .identity import credentials
from .profile import DIAG, EspDef
from .security import DeviceSecurity, EspSessionError

LOG = logging.getLogger(__name__)
USER_DESCRIPTION = "00002901-0000-1000-8000-00805f9b34fb"
COOKIE = "session"
RELEASE_GRACE_S = 1.0  # after success, the phone's session ends this much later
IDLE_S = 30.0  # an established session unused this long may make room for a new one
MAX_HTTP_CLIENTS = 16  # cookies kept; the oldest without a session go first
MAX_REQUEST = 4096  # the largest endpoint request (security 2's first is about 420 bytes)
_AUTH = {
    "open": "open",
    "wep": "wep",
    "wpa2-psk": "wpa2-psk",
    "wpa3-sae": "wpa3-sae",
    "wpa2-wpa3": "wpa2-wpa3",
    "enterprise": "enterprise",
}


class EndpointError(Exception):
    """A request the endpoint cannot answer at all (no session, undecodable, no room for a new
    session): the transport reports a failure (BLE: an empty answer; HTTP: the coded error,
    ``code``, with its status)."""

    def __init__(self, detail: str, code: Code = Code.MALFORMED_REQUEST) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class CookiePeer:
    """The session-layer peer of an HTTP client: equal by its cookie, shown (in logs, reprs) by
    a short digest of it, never the cookie itself (a bearer credential)."""

    token: str = field(repr=False)

    def __str__(self) -> str:
        return f"esp http client {hashlib.sha256(self.token.encode()).hexdigest()[:8]}"

    __repr__ = __str__


@dataclass
class _Session:
    security: DeviceSecurity
    last_used: float = field(default_factory=time.monotonic)
    ssid: bytes | None = None
    passphrase: Secret | None = None
    applied: bool = False  # ApplyConfig started a join this session follows
    networks: list[AccessPoint] = field(default_factory=list)
    last_error: dict[str, Any] | None = None


class EspEndpoints:
    """The endpoints of every protocomm session of one device."""

    def __init__(self, port: DoorPort, spec: EspDef, *, security: int, patch: int) -> None:
        self.port, self.spec, self.version, self.patch = port, spec, security, patch
        self.pop, self.salt, self.verifier = credentials(port, spec)
        self._sessions: OrderedDict[Hashable, _Session] = OrderedDict()
        self._release_timer: asyncio.TimerHandle | None = None

    def proto_ver(self) -> bytes:
        caps = list(self.spec.caps)
        if self.version == 0:
            caps.append("no_sec")
        prov: dict[str, Any] = {"ver": self.spec.proto_ver, "sec_ver": self.version, "cap": caps}
        if self.version == 2:
            prov["sec_patch_ver"] = self.patch
        info = {
            "prov": prov,
            "device_sim": {"diag": DIAG, "id": self.port.identity.device_id},
        }
        return json.dumps(info, separators=(",", ":")).encode()

    async def call(self, endpoint: str, key: Hashable, data: bytes) -> bytes:
        """Answer ``data`` sent to ``endpoint`` by session ``key``. Raises EndpointError."""
        if len(data) > MAX_REQUEST:
            raise EndpointError(f"a request of {len(data)} bytes")
        if endpoint == "proto-ver":
            return self.proto_ver()
        if endpoint == "prov-session":
            return self._session_step(key, data)
        session = self._sessions.get(key)
        if session is None or session.security.cipher is None:
            raise EndpointError(f"{endpoint} without an established session")
        self._sessions.move_to_end(key)
        session.last_used = time.monotonic()
        try:
            plain = session.security.cipher.decrypt(data)
        except EspSessionError as exc:
            raise EndpointError(exc.detail) from None
        try:
            if endpoint == "prov-config":
                answer = proto.encode(proto.CONFIG, await self._config(key, session, plain))
            elif endpoint == "prov-scan":
                answer = proto.encode(proto.SCAN, await self._scan(key, session, plain))
            elif endpoint == "prov-ctrl":
                answer = proto.encode(proto.CTRL, self._ctrl(key, session, plain))
            elif endpoint == DIAG:
                answer = json.dumps(self.diagnostics(session), separators=(",", ":")).encode()
            else:
                raise EndpointError(f"no endpoint {endpoint}")
        except proto.DecodeError as exc:
            raise EndpointError(f"{endpoint}: {exc}") from None
        return session.security.cipher.encrypt(answer)

    def has_session(self, key: Hashable) -> bool:
        return key in self._sessions

    def close(self) -> None:
        if self._release_timer is not None:
            self._release_timer.cancel()

    def drop(self, key: Hashable) -> None:
        """The transport of session ``key`` is gone (BLE disconnect)."""
        if self._sessions.pop(key, None) is not None and self.port.session_peer == key:
            self.port.peer_gone(key)

    # --- prov-session ------------------------------------------------------------------------

    def _session_step(self, key: Hashable, data: bytes) -> bytes:
        try:
            request = proto.decode(proto.SESSION, data)
        except proto.DecodeError as exc:
            raise EndpointError(f"prov-session: {exc}") from None
        payload = request.get(f"sec{request.get('sec_ver', 0)}", {})
        session = self._sessions.get(key)
        if session is None or payload.get("msg", 0) == proto.CMD0:
            session = self._open(key)
        session.last_used = time.monotonic()
        try:
            if session.security.version and payload.get("msg", 0) == proto.CMD0:
                self.port.check_backoff()
            answer = session.security.handle(request)
        except OnboardingError as exc:  # TOO_MANY_ATTEMPTS
            session.last_error = _error(exc)
            return proto.encode(proto.SESSION, session.security.error("InvalidSession"))
        except EspSessionError as exc:
            LOG.info("esp: session %s: %s", _short(key), exc.detail)
            if session.security.proof_failed:
                self.port.proof_failed(f"esp: {exc.detail}")
            self._sessions.pop(key, None)
            return proto.encode(proto.SESSION, session.security.error(exc.status))
        if session.security.cipher is not None:
            self.port.proof_succeeded()
            LOG.info("esp: security %d session open (%s)", self.version, _short(key))
        return proto.encode(proto.SESSION, answer)

    def _open(self, key: Hashable) -> _Session:
        old = self._sessions.pop(key, None)
        if old is not None and self.port.session_peer == key:
            self.port.release(key)
        if len(self._sessions) >= self.spec.max_sessions:
            self._make_room()
        security = DeviceSecurity(
            self.version,
            pop=self.pop.reveal().encode() if self.version == 1 else None,
            username=self.spec.username,
            salt=self.salt,
            verifier=self.verifier,
            patch=self.patch,
        )
        session = _Session(security)
        self._sessions[key] = session
        return session

    def _make_room(self) -> None:
        """One session goes for a new one: the oldest that is still in its handshake, else the
        oldest established one unused for IDLE_S; never the one that holds the device. A
        client with no proof of possession cannot end an established session this way (it
        used to be the oldest, whatever it was). Raises EndpointError(BUSY) when none may go."""
        now = time.monotonic()
        holder = self.port.session_peer
        handshaking = [k for k, s in self._sessions.items() if s.security.cipher is None]
        idle = [
            k
            for k, s in self._sessions.items()
            if s.security.cipher is not None and now - s.last_used >= IDLE_S
        ]
        for key in (*handshaking, *idle):
            if key != holder:
                del self._sessions[key]
                return
        raise EndpointError(
            f"{len(self._sessions)} sessions are open and in use; try again later", Code.BUSY
        )

    # --- prov-config -------------------------------------------------------------------------

    async def _config(self, key: Hashable, session: _Session, plain: bytes) -> dict[str, Any]:
        request = proto.decode(proto.CONFIG, plain)
        msg = request.get("msg", 0)
        if msg == proto.CMD_GET_STATUS:
            return {"msg": proto.RESP_GET_STATUS, "resp_get_status": self._status(key, session)}
        if msg == proto.CMD_SET_CONFIG:
            cfg = request.get("cmd_set_config", {})
            status = 0
            try:
                passphrase = cfg.get("passphrase", b"").decode("utf-8")
            except UnicodeDecodeError:
                passphrase, status = "", proto.STATUS["InvalidArgument"]
            ssid = cfg.get("ssid", b"")
            if not 1 <= len(ssid) <= 32:
                status = proto.STATUS["InvalidArgument"]
            if status == 0:
                session.ssid = ssid
                session.passphrase = Secret(passphrase) if passphrase else None
            return {"msg": proto.RESP_SET_CONFIG, "resp_set_config": {"status": status}}
        if msg == proto.CMD_APPLY_CONFIG:
            return {"msg": proto.RESP_APPLY_CONFIG, "resp_apply_config": self._apply(key, session)}
        raise proto.DecodeError(f"prov-config message {msg}")

    def _apply(self, key: Hashable, session: _Session) -> dict[str, Any]:
        if session.ssid is None:
            return {"status": proto.STATUS["InvalidArgument"]}
        try:
            self.port.direct_provision(key, session.ssid, session.passphrase, hidden=False)
        except OnboardingError as exc:
            LOG.info("esp: ApplyConfig refused: %s", exc)
            session.last_error = _error(exc)
            bad = exc.code.name == "INVALID_CREDENTIALS_FORMAT"
            return {"status": proto.STATUS["InvalidArgument" if bad else "InternalError"]}
        session.applied, session.last_error = True, None
        return {"status": 0}

    def _status(self, key: Hashable, session: _Session) -> dict[str, Any]:
        record, state = self.port.record, self.port.state
        associated = self.port.associated  # online, or still on its Wi-Fi without internet
        busy = self.port.busy and not associated
        if busy or (session.applied and state is State.CREDENTIALS_RECEIVED):
            return {"status": 0, "sta_state": proto.STA_CONNECTING}
        if associated:
            self._finished(key, session, online=True)
            match = re.search(r"\bip (\S+)", record.detail or "")
            connected = {
                "ip4_addr": match.group(1) if match else "0.0.0.0",
                "ssid": record.ssid or b"",
            }
            return {"status": 0, "sta_state": proto.STA_CONNECTED, "connected": connected}
        if state is State.FAILED:
            self._finished(key, session)
            auth = record.code.name in self.spec.auth_error_codes
            reason = proto.FAIL_AUTH_ERROR if auth else proto.FAIL_NETWORK_NOT_FOUND
            return {"status": 0, "sta_state": proto.STA_FAILED, "fail_reason": reason}
        return {"status": 0, "sta_state": proto.STA_DISCONNECTED}

    def _finished(self, key: Hashable, session: _Session, *, online: bool = False) -> None:
        """The phone read the outcome of its join: the device is free for others again. After
        success, a moment later (ESP-IDF's cleanup delay), so the phone can still read the
        diagnostics endpoint before a concurrent access point goes down with the session."""
        if not session.applied or self.port.session_peer != key:
            return
        if not online:
            self.port.release(key)
            return
        session.applied = False
        loop = asyncio.get_running_loop()
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = loop.call_later(RELEASE_GRACE_S, self.port.release, key)

    # --- prov-scan and prov-ctrl -------------------------------------------------------------

    async def _scan(self, key: Hashable, session: _Session, plain: bytes) -> dict[str, Any]:
        request = proto.decode(proto.SCAN, plain)
        msg = request.get("msg", 0)
        if msg == proto.CMD_SCAN_START:
            try:
                networks = await self.port.scan()
            except OnboardingError as exc:
                session.last_error = _error(exc)
                return {"msg": proto.RESP_SCAN_START, "status": proto.STATUS["InternalError"]}
            session.networks = [ap for ap in networks if ap.ssid]
            return {"msg": proto.RESP_SCAN_START, "resp_scan_start": {}}
        if msg == proto.CMD_SCAN_STATUS:
            status = {"scan_finished": 1, "result_count": len(session.networks)}
            return {"msg": proto.RESP_SCAN_STATUS, "resp_scan_status": status}
        if msg == proto.CMD_SCAN_RESULT:
            ask = request.get("cmd_scan_result", {})
            start, asked = ask.get("start_index", 0), ask.get("count", 0)
            if start >= len(session.networks) or asked == 0:
                return {"msg": proto.RESP_SCAN_RESULT, "status": proto.STATUS["InvalidArgument"]}
            # Over BLE an answer is one characteristic value (a page); over HTTP, as ESP-IDF
            # does, every entry asked for (esp_prov asks for 100 at once over the SoftAP).
            page = asked if isinstance(key, CookiePeer) else self.spec.scan_page
            count = min(asked, page, len(session.networks) - start)
            entries = [_entry(ap) for ap in session.networks[start : start + count]]
            return {"msg": proto.RESP_SCAN_RESULT, "resp_scan_result": {"entries": entries}}
        raise proto.DecodeError(f"prov-scan message {msg}")

    def _ctrl(self, key: Hashable, session: _Session, plain: bytes) -> dict[str, Any]:
        request = proto.decode(proto.CTRL, plain)
        msg = request.get("msg", 0)
        if msg not in (proto.CMD_CTRL_RESET, proto.CMD_CTRL_REPROV):
            raise proto.DecodeError(f"prov-ctrl message {msg}")
        if self.port.busy:  # a join runs: neither may interrupt it
            return {"msg": msg + 1, "status": proto.STATUS["InvalidSession"]}
        # reset: after a failure, start over; reprov: a provisioned device takes new settings.
        session.ssid = session.passphrase = None
        session.applied, session.last_error = False, None
        if self.port.session_peer == key:
            self.port.release(key)
        LOG.info("esp: %s", "reset" if msg == proto.CMD_CTRL_RESET else "reprovision")
        if msg == proto.CMD_CTRL_RESET:
            return {"msg": proto.RESP_CTRL_RESET, "resp_ctrl_reset": {}}
        return {"msg": proto.RESP_CTRL_REPROV, "resp_ctrl_reprov": {}}

    def diagnostics(self, session: _Session | None = None) -> dict[str, Any]:
        """device-sim's specific outcome, for an ESP app that knows device-sim."""
        record = self.port.record
        entry = self.port.profile.code(record.code)
        out: dict[str, Any] = {
            "state": record.state.wire_name,
            "code": entry.id,
            "code_name": entry.name,
            "message": entry.user_message,
            "next_step": entry.next_step,
            "phase": record.phase,
            "attempt": record.attempt,
        }
        if session is not None and session.last_error is not None:
            out["request_error"] = session.last_error
        return out


def _error(exc: OnboardingError) -> dict[str, Any]:
    return {"code": int(exc.code), "code_name": exc.code.name, "detail": exc.detail}


def _entry(ap: AccessPoint) -> dict[str, Any]:
    try:
        bssid = bytes.fromhex(ap.bssid.replace(":", ""))
    except ValueError:
        bssid = b""
    auth = proto.AUTH_MODES.get(_AUTH.get(str(ap.security), "open"), 0)
    return {"ssid": ap.ssid, "channel": ap.channel, "rssi": ap.rssi, "bssid": bssid, "auth": auth}


def _short(key: Hashable) -> str:
    return str(key[0]) if isinstance(key, tuple) and key else str(key)
