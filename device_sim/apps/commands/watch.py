"""``device-sim watch``: devices' onboarding as it happens, from their control sockets.

It shows each device's state, the last events before it joined, then each event as it comes:
wall-clock time, time since CONNECT, state, phase, code, and how long each phase took. A failure
adds the code's message, next step and the question support should ask. On a terminal it is a
live view (rich); otherwise, and with ``--plain``, one line per event; ``--json`` prints the
stream as JSON lines. ``--state-dir`` names one device, or a directory whose subdirectories are
devices (every one is watched). It follows each daemon across restarts. When no daemon runs
for a device, it says so plainly, shows the events recorded in its ``onboarding.jsonl`` and
waits for one to start; a directory that does not exist is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...control import SOCKET_NAME, follow
from ...profile import Profile, load_profile

TERMINAL = ("online", "failed")
# Phases whose detail a line shows: the connected life (a loss, a retry, the doors reopening,
# the world changing) and the doors' decisions.
TOLD = frozenset(
    {
        "link_lost",
        "lease_lost",
        "dns_lost",
        "internet_lost",
        "reconnect",
        "reopen",
        "world",
        "door",
        "networks",
        "session",
    }
)
LOSSES = frozenset({"link_lost", "lease_lost", "dns_lost", "internet_lost"})
KEEP = 40  # events a device's live timeline shows


@dataclass
class Timeline:
    """One device's view: its state, its events, and the failure to explain."""

    name: str
    profile: Profile
    state: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    failure: int | None = None  # the code of the last failed outcome
    failed_at: str | None = None  # the phase that failed (the one running when it ended)
    failed_detail: str = ""  # the failure's own words (which AP refused, where a portal goes)

    def add(self, item: dict[str, Any]) -> None:
        if item.get("kind") == "state":
            self.state = item
            self.failure = int(item["code"]) if item.get("state") == "failed" else None
            if self.failure is not None and not self.failed_at:
                self.failed_at = str(item.get("phase") or "") or None
            return
        previous = self.events[-1] if self.events else None
        self.events = [*self.events, item][-KEEP:]
        self.state = {**self.state, "state": item["state"], "phase": item["phase"]}
        if item.get("phase") == "joining":
            self.failure, self.failed_at, self.failed_detail = None, None, ""
        if item.get("phase") in ("failed", *LOSSES) and item.get("code"):
            self.failure = int(item["code"])
            self.failed_detail = str(item.get("detail") or "")
            self.failed_at = (
                str(item["phase"])
                if item.get("phase") in LOSSES
                else str(previous.get("phase"))
                if previous is not None
                else None
            )
        if item.get("phase") == "online":
            self.failure = None

    def durations(self) -> list[int | None]:
        """Each event's phase duration: until the next event of the same attempt, in ms."""
        out: list[int | None] = []
        followers: list[dict[str, Any] | None] = [*self.events[1:], None]
        for event, following in zip(self.events, followers[: len(self.events)], strict=True):
            start, end = event.get("since_connect_ms"), (following or {}).get("since_connect_ms")
            same = following is not None and following.get("phase") != "joining"
            out.append(end - start if start is not None and end is not None and same else None)
        return out

    def line(self, item: dict[str, Any]) -> str:
        """One plain line for ``item`` (a state or an event)."""
        prefix = f"[{self.name}] " if self.name else ""
        if item.get("kind") == "state":
            return (
                f"{prefix}device: {item['state']} ({item['code_name']}), attempt "
                f"{item['attempt']}, doors {', '.join(item.get('doors', [])) or 'none'}"
            )
        since = item.get("since_connect_ms")
        mark = "·" if item.get("backlog") else " "
        code = item.get("code_name", "") if item.get("code") else ""
        code = " ".join(part for part in (code, _fault_note(item), _told(item)) if part)
        return (
            f"{prefix}{mark}{str(item.get('at', ''))[11:23]}  "
            f"{'+' + str(since) + ' ms' if since is not None else '':>11}  "
            f"{item['state']:<21} {item['phase']:<15} {code}"
        ).rstrip()

    def card(self) -> list[str]:
        """The failure's explanation (empty when the device has not failed)."""
        if self.failure is None:
            return []
        entry = self.profile.code(self.failure)
        lines = [f"{entry.name} ({entry.id}): {entry.user_message}"]
        if self.failed_at:
            lines.append(f"failed at: {self.failed_at}")
        if self.failed_detail:
            lines.append(f"detail: {self.failed_detail}")
        return [
            *lines,
            f"next step: {entry.next_step}",
            f"support asks: {entry.support_question}",
        ]

    def title(self, now_ms: int | None = None) -> str:
        """Who and where: the device's name and id, its state, the phase that failed (not the
        rescan after it) or the phase running, with the time spent against its timeout."""
        who = self.name or self.state.get("name") or "device"
        device_id = self.state.get("device_id")
        head = f"{who}" + (f" ({device_id})" if device_id else "")
        state = self.state.get("state", "?")
        if self.failure is not None and self.failed_at:
            return f"{head}: {state} · failed at {self.failed_at}"
        phase = str(self.state.get("phase", "?"))
        timeout = (self.state.get("timeouts_ms") or {}).get(phase)
        running = self._running_ms(now_ms)
        if timeout and running is not None:
            return f"{head}: {state} · {phase} {running / 1000:.1f} s of {timeout / 1000:g} s"
        return f"{head}: {state} · {phase}"

    def _running_ms(self, now_ms: int | None) -> int | None:
        """How long the last event's phase has been running (None: unknown)."""
        if not self.events or now_ms is None:
            return None
        at = str(self.events[-1].get("at") or "")
        try:
            import datetime as dt

            started = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            return None
        return max(0, now_ms - int(started.timestamp() * 1000))

    def renderable(self) -> Any:
        """The live view of this device (rich)."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        table = Table(expand=True, show_edge=False, pad_edge=False)
        for column in ("time", "since CONNECT", "state", "phase", "took", "code"):
            table.add_column(column, no_wrap=True)
        for event, took in zip(self.events, self.durations(), strict=True):
            since = event.get("since_connect_ms")
            style = {"failed": "red", "online": "green", "reopen": "yellow"}.get(
                event.get("phase", ""), "red" if event.get("phase") in LOSSES else ""
            )
            table.add_row(
                str(event.get("at", ""))[11:23],
                "" if since is None else f"+{since} ms",
                event["state"],
                event["phase"],
                "" if took is None else f"{took} ms",
                " ".join(
                    part
                    for part in (
                        event.get("code_name", "") if event.get("code") else "",
                        _fault_note(event),
                        _told(event),
                    )
                    if part
                ),
                style=style,
            )
        parts: list[Any] = [table]
        if self.failure is not None:
            parts.append(Panel("\n".join(self.card()), title="failed", border_style="red"))
        import time

        return Panel(Group(*parts), title=self.title(int(time.time() * 1000)))


def devices(root: Path) -> list[tuple[str, Path]]:
    """``root`` itself when it is a device's state directory, else its device subdirectories."""

    def is_device(path: Path) -> bool:
        return (path / SOCKET_NAME).exists() or (path / "device.sqlite3").exists()

    if is_device(root) or not root.is_dir():
        return [("", root)]
    found = sorted(p for p in root.iterdir() if p.is_dir() and is_device(p))
    return [(p.name, p) for p in found] or [("", root)]


def existing_devices(root: Path) -> list[tuple[str, Path]]:
    """:func:`devices` of a directory that exists. Raises ConfigError."""
    from ...errors import ConfigError

    if not root.is_dir():
        raise ConfigError(str(root), "no such directory: give a device's state directory")
    return devices(root)


def recorded(state_dir: Path, last: int) -> list[dict[str, Any]]:
    """The last ``last`` events of the device's event log (and its rotation), as stream items."""
    from ...support.bundle import events_of, timeline

    return [
        {"kind": "event", **event, "backlog": True, "recorded": True}
        for event in (events_of(timeline(state_dir, last)) if last else [])
        if {"state", "phase", "seq"} <= set(event)
    ]


# Over 80 lines on purpose: the view's sources (a daemon, a fleet, a URL, a bundle) and its terminal
# handling in one loop.
async def run(args: argparse.Namespace) -> int:
    """Watch until interrupted, ``--timeout`` seconds, or (``--until-outcome``) an outcome:
    0 online, 1 failed (with several devices: when every one has one; 1 if any failed).

    Raises ConfigError when the state directory does not exist."""
    profile = load_profile()
    if getattr(args, "bundle", None) is not None:
        return open_bundle(args, profile)
    if getattr(args, "url", None) is not None:
        return await follow_url(args, profile)
    targets = existing_devices(Path(args.state_dir))
    shown: dict[str, int] = {}  # per device: the last sequence number shown from its log
    views = {name: Timeline(name, profile) for name, _ in targets}
    outcomes: dict[str, str] = {}
    done = asyncio.Event()
    live = None
    if not args.json and not args.plain and sys.stdout.isatty():
        from rich.live import Live

        live = Live(render(views), refresh_per_second=8, transient=False)

    def on_item(name: str, item: dict[str, Any]) -> None:
        if item.get("backlog") and int(item.get("seq", 0)) <= shown.get(name, -1):
            return  # already shown from the device's log while no daemon ran
        view = views[name]
        view.add(item)
        if args.json:
            print(json.dumps({"device": name, **item} if name else item), flush=True)
        elif live is not None:
            live.update(render(views))
        else:
            print(view.line(item), flush=True)
            if item.get("kind") == "event" and not item.get("backlog"):
                failing = item.get("phase") in ("failed", *LOSSES) and item.get("code")
                for text in view.card() if failing else []:
                    print(f"    {text}", flush=True)
        outcome = _outcome(item)
        if outcome is not None:
            outcomes[name] = outcome
            if args.until_outcome and len(outcomes) == len(views):
                done.set()

    def on_wait(name: str, why: str) -> None:
        label = f" {name}" if name else ""
        path = dict(targets)[name]
        past = recorded(path, args.last)
        print(
            f"device-sim watch{label}: no daemon is running for {path}; "
            + (f"its last {len(past)} recorded event(s) follow; " if past else "")
            + "waiting for it to start (Ctrl-C to stop)",
            file=sys.stderr,
        )
        for item in past:
            if int(item["seq"]) > shown.get(name, -1):
                on_item(name, item)
                shown[name] = int(item["seq"])

    tasks = [
        asyncio.ensure_future(
            follow(
                path,
                functools.partial(on_item, name),
                last=args.last,
                on_wait=functools.partial(on_wait, name),
            )
        )
        for name, path in targets
    ]
    try:
        with (
            live if live is not None else contextlib.nullcontext(),
            contextlib.suppress(TimeoutError),
        ):
            async with asyncio.timeout(args.timeout):
                await done.wait()  # until the outcomes, --timeout, or Ctrl-C
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if args.until_outcome and outcomes:
        return 1 if "failed" in outcomes.values() else 0
    return 0


def _outcome(item: dict[str, Any]) -> str | None:
    if item.get("kind") != "event" or item.get("backlog"):
        return None
    state = item.get("state")
    return state if state in TERMINAL and item.get("phase") in TERMINAL else None


def render(views: dict[str, Timeline]) -> Any:
    """Every device's live view, one under the other (rich)."""
    from rich.console import Group

    return Group(*(view.renderable() for view in views.values()))


def _told(event: dict[str, Any]) -> str:
    """The detail of a connected-life or door event (a loss's cause, a retry's schedule)."""
    detail = str(event.get("detail") or "")
    if event.get("phase") not in TOLD or not detail:
        return ""
    return detail if len(detail) <= 90 else detail[:89] + "…"


def _fault_note(event: dict[str, Any]) -> str:
    """QA faults in the stream: a fault added or removed (its description), or the faults that
    hit this phase."""
    if event.get("phase") == "fault":
        return str(event.get("detail", ""))
    hit = (event.get("data") or {}).get("faults")
    return (
        f"(fault: {', '.join(map(str, hit))})" if hit and event.get("phase") != "scanning" else ""
    )


def open_bundle(args: argparse.Namespace, profile: Profile) -> int:
    """``watch --bundle FILE``: a diagnostics bundle a customer sent, read as support reads a
    live device: its summary, its timeline as lines, and the failure's card. Raises
    ConfigError for a file that is not a bundle."""
    import tarfile

    from ...errors import ConfigError

    path = Path(args.bundle)
    try:
        texts: dict[str, str] = {}
        with tarfile.open(path, "r:gz") as archive:
            for member in archive.getmembers():
                data = archive.extractfile(member) if member.size <= 16 * 1024 * 1024 else None
                if member.isfile() and data is not None:
                    texts[Path(member.name).name] = data.read().decode("utf-8", "replace")
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ConfigError(str(path), f"not a diagnostics bundle: {exc}") from None
    if "timeline.jsonl" not in texts:
        raise ConfigError(str(path), "not a diagnostics bundle: no timeline.jsonl in it")
    from ...support.bundle import events_of

    view = Timeline("", profile)
    events = events_of(texts["timeline.jsonl"])[-args.last if args.last else None :]
    items = [{"kind": "event", **e} for e in events if {"state", "phase"} <= set(e)]
    if args.json:
        for item in items:
            print(json.dumps(item))
        return 0
    print(texts.get("summary.txt", "(no summary.txt: a bundle from before it existed)\n"))
    print("timeline:")
    for item in items:
        view.add(item)
        print(view.line(item))
    for text in view.card():
        print(f"    {text}")
    others = sorted(set(texts) - {"summary.txt", "timeline.jsonl"})
    print(f"\nalso in the bundle: {', '.join(others)}")
    return 0


async def follow_url(args: argparse.Namespace, profile: Profile) -> int:
    """``watch --url URL``: a device's watch listener (Server-Sent Events), with its token
    when it asks for one, until interrupted, ``--timeout`` or an outcome."""
    import os

    import aiohttp

    from ...errors import ConfigError, TransportError

    token = args.token or os.environ.get("DEVICE_SIM_WATCH_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    view = Timeline("", profile)
    outcome: str | None = None
    url = str(args.url).rstrip("/") + "/events"

    async def stream() -> None:
        nonlocal outcome
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                async with http.get(url, headers=headers) as reply:
                    if reply.status == 401:
                        raise ConfigError("--token", f"{args.url} requires its token")
                    if reply.status != 200:
                        raise TransportError(f"{url}: HTTP {reply.status}")
                    kind, data = "", ""
                    async for raw in reply.content:
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        if line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:"):
                            data += line[5:].strip()
                        elif not line and data:
                            item = json.loads(data)
                            item.setdefault("kind", "state" if kind == "state" else "event")
                            data = ""
                            view.add(item)
                            print(json.dumps(item) if args.json else view.line(item), flush=True)
                            if item.get("kind") == "event" and not item.get("backlog"):
                                if not args.json and item.get("phase") in ("failed", *LOSSES):
                                    for text in view.card():
                                        print(f"    {text}", flush=True)
                                outcome = _outcome(item) or outcome
                                if args.until_outcome and outcome:
                                    return
            except aiohttp.ClientError as exc:
                raise TransportError(f"cannot follow {url}: {exc}") from None

    try:
        async with asyncio.timeout(args.timeout):
            await stream()
    except TimeoutError:
        pass
    if args.until_outcome and outcome:
        return 1 if outcome == "failed" else 0
    return 0
