"""Local control channel: operators and tests send commands to a running daemon.

Transport: a Unix stream socket ``<state_dir>/control.sock`` (mode 0600). Protocol: one UTF-8 JSON
object per newline-terminated line, ``{"command": name, "args": {...}}`` answered by
``{"ok": true, "result": {...}}`` or ``{"ok": false, "code": n, "code_name": s, "detail": s}``.
Several requests may follow each other on one connection. Request args are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from .codes import Code
from .document import JsonTooDeep, loads_json
from .errors import (
    ConfigError,
    DaemonAlreadyRunning,
    DeviceSimError,
    OnboardingError,
    TransportError,
)
from .lifecycle import Component

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
# A streaming command: answered by {"ok": true, "stream": true}, then one {"event": {...}} line
# per item until the client hangs up or the daemon stops (e.g. `watch`).
StreamHandler = Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]]

SOCKET_NAME = "control.sock"
MAX_REQUEST = 4096  # bytes per request line, newline excluded
MAX_RESPONSE = 1 << 20
IDLE_TIMEOUT = 5.0  # seconds a client may stay silent (or not read) before it is dropped
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes including the NUL


def socket_path(state_dir: Path) -> Path:
    """Where the daemon for ``state_dir`` listens."""
    return Path(state_dir) / SOCKET_NAME


def _error(code: Code, detail: str) -> dict[str, Any]:
    return {"ok": False, "code": int(code), "code_name": code.name, "detail": detail}


class ControlServer(Component):
    """Serves control commands on ``<state_dir>/control.sock`` while started.

    Built-in commands: ``ping`` -> ``{"pong": true}``, ``commands`` -> ``{"commands": [...]}``.
    A handler that raises a :class:`DeviceSimError` (e.g. :class:`OnboardingError`) answers with
    its code and detail; any other exception is logged and answers ``INTERNAL_ERROR``.
    """

    def __init__(
        self,
        state_dir: Path,
        handlers: Mapping[str, Handler] | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.path = socket_path(state_dir)
        self.idle_timeout = idle_timeout
        self._handlers: dict[str, Handler] = {"ping": self._ping, "commands": self._commands}
        self._streams: dict[str, StreamHandler] = {}
        self._server: asyncio.AbstractServer | None = None
        self._open = False  # False once stop() began: late-accepted connections end at once
        self._inode: int | None = None  # of the socket file we bound, to remove only our own
        self._clients: set[asyncio.Task[Any]] = set()
        for name, handler in (handlers or {}).items():
            self.register(name, handler)

    def register(self, name: str, handler: Handler) -> None:
        """Add a command (also while serving). Raises :class:`ConfigError` for a taken name."""
        if not name or name in self._handlers:
            raise ConfigError(f"control command {name!r}", "empty or already registered")
        self._handlers[name] = handler

    def register_stream(self, name: str, handler: StreamHandler) -> None:
        """Add a streaming command. Raises :class:`ConfigError` for a taken name."""
        if not name or name in self._handlers or name in self._streams:
            raise ConfigError(f"control command {name!r}", "empty or already registered")
        self._streams[name] = handler

    async def start(self) -> None:
        """Bind and serve.

        Raises :class:`TransportError` if a live daemon already answers on the socket, if the
        path is taken by something that is not a socket, is too long, or cannot be bound.
        A stale socket file (nobody listening) is replaced.
        """
        if self._server is not None:
            return
        path = self.path
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise TransportError(f"control socket path too long for a Unix socket: {path}")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(path))
            os.chmod(path, 0o600)  # before listen(): nobody can connect until then
            self._inode = os.stat(path).st_ino
            self._open = True
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=MAX_REQUEST
            )
        except OSError as exc:
            sock.close()
            await self.stop()
            raise TransportError(f"cannot serve control socket {path}: {exc}") from exc
        log.info("control socket listening on %s", path)

    async def stop(self) -> None:
        """Stop accepting, drop connected clients, remove the socket file if it is ours."""
        server, self._server, self._open = self._server, None, False
        if server is not None:
            server.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if self._inode is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == self._inode:
                    self.path.unlink()
            self._inode = None

    @staticmethod
    async def _clear_stale(path: Path) -> None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise TransportError(f"{path} exists and is not a socket; refusing to replace it")
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_unix_connection(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("replacing stale control socket %s", path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # noqa: ASYNC240 - one local unlink
            return
        except OSError as exc:  # includes TimeoutError: something holds it but does not answer
            raise TransportError(f"control socket {path} is in use but unusable: {exc!r}") from exc
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        raise DaemonAlreadyRunning(
            f"another daemon is already running for {path.parent} (it answers on {path})",
            f"stop it first (device-sim ctl --state-dir {path.parent} status shows it), or "
            f"give this one another --state-dir",
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while self._open:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        line = await reader.readline()
                except TimeoutError:
                    log.debug("control client silent for %.1f s; dropped", self.idle_timeout)
                    return
                except ValueError:  # the line overran MAX_REQUEST
                    await self._send(
                        writer,
                        _error(
                            Code.MESSAGE_TOO_LARGE, f"request line longer than {MAX_REQUEST} bytes"
                        ),
                    )
                    return
                if not line:
                    return
                stream = self._stream_of(line)
                if stream is not None:
                    await self._stream(writer, *stream)
                    return
                await self._send(writer, await self._answer(line))
        except (ConnectionError, TimeoutError):
            log.debug("control client went away")
        except asyncio.CancelledError:
            if self._open:
                raise
            # stop() ends the connection (a watcher's stream). The handler ends normally: on
            # Python 3.11 asyncio's streams ask a cancelled handler task for its exception
            # and log the CancelledError that raises as an error with a traceback.
            log.debug("control client dropped: the daemon is stopping")
        finally:
            self._clients.discard(task)
            writer.close()
            try:
                with contextlib.suppress(OSError):
                    async with asyncio.timeout(1.0):
                        await writer.wait_closed()
            finally:
                writer.transport.abort()  # no-op once closed; drops a client that never reads

    def _stream_of(self, line: bytes) -> tuple[StreamHandler, dict[str, Any]] | None:
        """The streaming command a request line asks for, with its args (None: not one)."""
        try:
            request = loads_json(line)
        except ValueError:
            return None
        if not isinstance(request, dict):
            return None
        handler = self._streams.get(request.get("command"))  # type: ignore[arg-type]
        args = request.get("args", {})
        if handler is None or not isinstance(args, dict):
            return None
        return handler, args

    async def _stream(
        self, writer: asyncio.StreamWriter, handler: StreamHandler, args: dict[str, Any]
    ) -> None:
        """Send items until the client goes (a write fails or it stops reading) or the daemon
        stops. A handler's coded error ends the stream with an error line."""
        await self._send(writer, {"ok": True, "stream": True})
        try:
            async for item in handler(args):
                await self._send(writer, {"event": item})
        except DeviceSimError as exc:
            await self._send(writer, _error(exc.code, exc.detail))

    async def _send(self, writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
        writer.write(json.dumps(response).encode() + b"\n")
        async with asyncio.timeout(self.idle_timeout):
            await writer.drain()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = loads_json(line)
        except JsonTooDeep as exc:
            return _error(Code.MALFORMED_REQUEST, f"request {exc}")
        except ValueError:
            return _error(Code.MALFORMED_REQUEST, "request is not one UTF-8 JSON object per line")
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return _error(Code.MALFORMED_REQUEST, 'request needs "command": "<name>"')
        command, args = request["command"], request.get("args", {})
        if not isinstance(args, dict):
            return _error(Code.MALFORMED_REQUEST, '"args" must be a JSON object')
        handler = self._handlers.get(command)
        if handler is None:
            return _error(
                Code.MALFORMED_REQUEST,
                f"unknown command {command!r}; known: " + ", ".join(sorted(self._handlers)),
            )
        try:
            result = dict(await handler(args))
            json.dumps(result)  # fail here, as this command's error, if it cannot be sent
        except DeviceSimError as exc:
            log.info("control command %s failed: %s", command, exc.code.name)
            return _error(exc.code, exc.detail)
        except Exception as exc:
            log.exception("control command %s raised %s: %s", command, type(exc).__name__, exc)
            return _error(
                Code.INTERNAL_ERROR, f"{command} failed ({type(exc).__name__}); see the daemon log"
            )
        log.info("control command %s ok", command)
        return {"ok": True, "result": result}

    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True}

    async def _commands(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"commands": sorted(self._handlers)}


async def control_request(
    state_dir: Path, command: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Send one command to the daemon for ``state_dir`` and return its result.

    Raises :class:`OnboardingError` with the daemon's code for an error response, and
    :class:`TransportError` when no daemon runs (no socket, refused), it does not answer within
    ``timeout`` seconds, or its answer is not a valid response. ``TypeError`` if ``args`` cannot
    be encoded as JSON.
    """
    path = socket_path(state_dir)
    line = json.dumps({"command": command, "args": args or {}}).encode() + b"\n"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=MAX_RESPONSE)
            try:
                writer.write(line)
                await writer.drain()
                answer = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        why = (
            "no control socket"
            if isinstance(exc, FileNotFoundError)
            else f"control socket {path} refuses connections"
        )
        raise TransportError(f"no daemon is running for {state_dir} ({why})") from exc
    except TimeoutError as exc:
        raise TransportError(
            f"the daemon for {state_dir} did not answer {command!r} within {timeout:g} s"
        ) from exc
    except (OSError, ValueError) as exc:
        raise TransportError(f"control socket {path}: {exc}") from exc
    try:
        response = json.loads(answer)
        if response["ok"] is True:
            return dict(response["result"])
        code_id, detail = int(response["code"]), str(response.get("detail", ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise TransportError(
            f"the daemon for {state_dir} sent no valid answer to {command!r}"
        ) from exc
    try:
        code = Code(code_id)
    except ValueError:
        code, detail = Code.INTERNAL_ERROR, f"unknown code {code_id}: {detail}"
    raise OnboardingError(code, detail)


async def control_stream(
    state_dir: Path, command: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0
) -> AsyncGenerator[dict[str, Any]]:
    """The items of streaming command ``command`` of the daemon for ``state_dir``, as they come;
    ends when the daemon closes the stream.

    Raises TransportError (no daemon, no valid answer within ``timeout``), OnboardingError (the
    daemon refused the command)."""
    path = socket_path(state_dir)
    line = json.dumps({"command": command, "args": args or {}}).encode() + b"\n"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=MAX_RESPONSE)
            writer.write(line)
            await writer.drain()
            first = json.loads(await reader.readline())
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise TransportError(f"no daemon is running for {state_dir}") from exc
    except (OSError, ValueError) as exc:  # TimeoutError is an OSError
        raise TransportError(f"control socket {path}: {exc}") from exc
    try:
        if not isinstance(first, dict) or first.get("ok") is not True:
            detail = first.get("detail", "") if isinstance(first, dict) else ""
            raise OnboardingError(Code.MALFORMED_REQUEST, f"{command}: {detail}")
        while True:
            raw = await reader.readline()
            if not raw:
                return
            try:
                item = json.loads(raw)
            except ValueError:
                raise TransportError(f"the daemon for {state_dir} sent no valid line") from None
            if "event" in item:
                yield dict(item["event"])
            else:
                raise OnboardingError(Code(int(item.get("code", 0)) or 1), item.get("detail", ""))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


RECONNECT_S = 0.5  # how often a follower looks for a daemon that is not (yet) running


async def follow(
    state_dir: Path,
    on_item: Callable[[dict[str, Any]], None],
    *,
    last: int = 20,
    on_wait: Callable[[str], None] = lambda why: None,
) -> None:
    """Call ``on_item`` for every item of the device's stream, across daemon restarts, until
    cancelled. ``on_wait`` hears why it is waiting (no daemon yet), once per wait."""
    waiting = False
    while True:
        try:
            async for item in control_stream(state_dir, "watch", {"last": last}):
                waiting = False
                on_item(item)
        except TransportError as exc:
            if not waiting:
                on_wait(str(exc))
                waiting = True
        await asyncio.sleep(RECONNECT_S)  # a poll for the daemon coming back
