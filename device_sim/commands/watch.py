"""``device-sim watch``: a device's onboarding as it happens, from its control socket.

It prints the device's state, the last events before it joined, then each event as it comes:
wall-clock time, time since CONNECT, state, phase, code. A failure adds the code's message, next
step and the question support should ask. ``--json`` prints the stream as JSON lines. It follows
the daemon across restarts (it waits for the control socket to come back).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from ..control import control_stream
from ..errors import TransportError
from ..profile import Profile, load_profile

RECONNECT_S = 0.5  # how often a watcher looks for a daemon that is not (yet) running
TERMINAL = ("online", "failed")


async def run(args: argparse.Namespace) -> int:
    """Watch until interrupted, ``--timeout`` seconds, or (``--until-outcome``) an outcome:
    0 online, 1 failed. Raises nothing for a missing daemon: it waits for one."""
    profile = load_profile()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    waiting = False
    while deadline is None or time.monotonic() < deadline:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if deadline is not None:
                    await stack.enter_async_context(
                        asyncio.timeout(max(0.0, deadline - time.monotonic()))
                    )
                stream = control_stream(args.state_dir, "watch", {"last": args.last})
                async for item in stream:
                    waiting = False
                    _show(profile, item, args.json)
                    if args.until_outcome and _outcome(item) is not None:
                        return 0 if _outcome(item) == "online" else 1
        except TransportError as exc:
            if not waiting:
                print(f"device-sim watch: waiting for the daemon ({exc})", file=sys.stderr)
                waiting = True
        except TimeoutError:
            break
        await asyncio.sleep(RECONNECT_S)  # a poll for the daemon coming back, bounded above
    return 0


def _outcome(item: dict[str, Any]) -> str | None:
    if item.get("kind") != "event" or item.get("backlog"):
        return None
    state = item.get("state")
    return state if state in TERMINAL and item.get("phase") in TERMINAL else None


def _show(profile: Profile, item: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(item), flush=True)
        return
    if item.get("kind") == "state":
        print(
            f"device: {item['state']} ({item['code_name']}), attempt {item['attempt']}, "
            f"doors {', '.join(item.get('doors', [])) or 'none'}",
            flush=True,
        )
        return
    since = item.get("since_connect_ms")
    clock = str(item.get("at", ""))[11:23]
    mark = "·" if item.get("backlog") else " "
    code = item.get("code_name", "") if item.get("code") else ""
    line = (
        f"{mark}{clock}  {'+' + str(since) + ' ms' if since is not None else '':>11}  "
        f"{item['state']:<21} {item['phase']:<15} {code}"
    )
    print(line.rstrip(), flush=True)
    if item.get("code") and not item.get("backlog") and item.get("phase") in TERMINAL:
        entry = profile.code(int(item["code"]))
        print(f"    {entry.name} ({entry.id}): {entry.user_message}", flush=True)
        print(f"    next step: {entry.next_step}", flush=True)
        print(f"    support asks: {entry.support_question}", flush=True)
