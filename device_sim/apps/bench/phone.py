"""Phones as people use them: the reference client playing a user and a phone OS.

A :class:`PhoneBehaviour` says what this phone and its user do: deny Bluetooth (the app falls
back to the device's SoftAP, once the device opens it), drop a Wi-Fi network without internet
after some seconds (Android and iOS leave the device's access point while the user types),
type the password wrong with some probability and retype it, take time to choose the network
and type, or walk away mid-flow. :func:`play` drives one onboarding that way through the real
doors (the personality's phone side from the door registry, or the native flow's session for
the SoftAP), with every draw from one seeded generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ...client.target import ProvisionRequest, Target
from ...codes import Code
from ...doors import registry
from ...doors.native.flow import Provisioner, failure_result
from ...errors import ConfigError, DeviceSimError
from ...profile import Profile
from ...security.secret import Secret

__all__ = ["PhoneBehaviour", "PhoneRun", "parse_behaviour", "play"]

MAX_TRIES = 5
MAX_REJOINS = 5
MAX_BUSY_RETRIES = 3
MAX_BUSY_WAIT_S = 60.0


@dataclass(frozen=True)
class PhoneBehaviour:
    """One phone and its user. Times are in seconds of the user's (wall-clock) time."""

    name: str = "careful"
    bluetooth: bool = True  # False: the user denied Bluetooth; the app uses the SoftAP
    think_s: tuple[float, float] = (0.0, 0.0)  # choosing the network and typing the password
    typo_probability: float = 0.0  # each time the password is typed
    retype_s: tuple[float, float] = (4.0, 10.0)  # noticing the error and typing again
    max_tries: int = 3  # passwords typed before the user gives up
    drops_no_internet_after_s: float | None = None  # the OS leaves a network with no internet
    rejoin_s: tuple[float, float] = (8.0, 15.0)  # the user finds the device's network again
    max_rejoins: int = 2
    walks_away_after_s: float | None = None  # the user leaves: the app stops mid-flow

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_RANGES = ("think_s", "retype_s", "rejoin_s")


def parse_behaviour(data: Mapping[str, Any], where: str, name: str = "phone") -> PhoneBehaviour:
    """A behaviour from YAML/JSON. Raises ConfigError naming the bad key."""
    if not isinstance(data, Mapping):
        raise ConfigError(where, "a phone behaviour is a mapping")
    known = {f for f in PhoneBehaviour.__dataclass_fields__ if f != "name"}
    changes: dict[str, Any] = {"name": name}
    for key, value in data.items():
        at = f"{where}.{key}"
        if key == "name":
            if not isinstance(value, str) or not value:
                raise ConfigError(at, "a phone's name is a non-empty string")
            changes["name"] = value
            continue
        if key not in known:
            raise ConfigError(at, f"unknown key (allowed: {', '.join(sorted(known))})")
        if key == "bluetooth":
            if not isinstance(value, bool):
                raise ConfigError(at, f"must be true or false, not {value!r}")
        elif key in _RANGES:
            pair = value if isinstance(value, list) else [value, value]
            if len(pair) != 2 or not all(_number(v, 0, 600) for v in pair) or pair[0] > pair[1]:
                raise ConfigError(at, "seconds, or [low, high], from 0 to 600")
            value = (float(pair[0]), float(pair[1]))
        elif key == "typo_probability":
            if not _number(value, 0, 1):
                raise ConfigError(at, f"a probability from 0 to 1, not {value!r}")
            value = float(value)
        elif key in ("max_tries", "max_rejoins"):
            top = MAX_TRIES if key == "max_tries" else MAX_REJOINS
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ConfigError(at, f"an integer from 1 to {top}, not {value!r}")
        elif value is not None and not _number(value, 0.1, 3600):
            raise ConfigError(at, f"seconds from 0.1 to 3600, or null, not {value!r}")
        changes[key] = value
    return replace(PhoneBehaviour(), **changes)


def _number(value: Any, lo: float, hi: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and lo <= value <= hi


@dataclass
class PhoneRun:
    """What happened, from the phone's side."""

    result: dict[str, Any] = field(default_factory=dict)
    transport: str = "ble"
    tries: int = 0  # passwords sent
    typos: int = 0
    drops: int = 0  # times the OS left the device's access point
    walked_away: bool = False
    seconds: float = 0.0  # from the user starting until the outcome (or giving up)
    story: list[str] = field(default_factory=list)

    @property
    def code_name(self) -> str:
        return str(self.result.get("code_name", "DEVICE_UNREACHABLE"))


SoftApWait = Callable[[], Awaitable[str]]  # waits until the device's AP is up: its API URL


@dataclass(frozen=True)
class _Scene:
    """Where the phone plays: the device's doors, the request, the user's dice."""

    profile: Profile
    personality: str
    ble_target: Target | None
    softap: SoftApWait | None
    request: ProvisionRequest
    rng: random.Random
    before_phone: Callable[[], Awaitable[None]] | None


async def play(
    behaviour: PhoneBehaviour,
    *,
    profile: Profile,
    personality: str,
    ble_target: Target | None,
    softap: SoftApWait | None,
    request: ProvisionRequest,
    rng: random.Random,
    before_phone: Callable[[], Awaitable[None]] | None = None,
) -> PhoneRun:
    """One onboarding as ``behaviour`` plays it. Never raises for the device's or the phone's
    failures: they are the run's result (walking away ends it as CLIENT_TIMEOUT)."""
    run = PhoneRun()
    t0 = time.monotonic()
    scene = _Scene(profile, personality, ble_target, softap, request, rng, before_phone)
    try:
        async with asyncio.timeout(behaviour.walks_away_after_s):  # None: the user stays
            await _play(behaviour, run, scene)
    except TimeoutError:
        run.walked_away = True
        run.story.append(f"walked away after {behaviour.walks_away_after_s:g} s")
        run.result = {
            "state": "abandoned",
            "code": int(Code.CLIENT_TIMEOUT),
            "code_name": Code.CLIENT_TIMEOUT.name,
            "detail": "the user left before the outcome",
        }
    run.seconds = time.monotonic() - t0
    return run


async def _play(behaviour: PhoneBehaviour, run: PhoneRun, scene: _Scene) -> None:
    profile, request, rng = scene.profile, scene.request, scene.rng
    if not behaviour.bluetooth or scene.ble_target is None:
        if scene.softap is None:
            run.result = _refused("no SoftAP to fall back to and no Bluetooth")
            return
        run.transport = "softap"
        if scene.ble_target is not None:
            run.story.append("Bluetooth denied: waiting for the device's Wi-Fi network")
        url = await scene.softap()
        await _softap_flow(behaviour, run, profile, Target(softap_url=url), request, rng)
        return
    await _think(behaviour.think_s, rng)
    entry = registry.get(scene.personality)
    passphrase = request.passphrase
    while True:
        typed, wrong = _type(passphrase, behaviour, rng)
        run.tries += 1
        run.typos += wrong
        if scene.before_phone is not None:
            await scene.before_phone()
        try:
            result = await entry.phone(
                profile, scene.ble_target, replace(request, passphrase=typed), None
            )
        except DeviceSimError as exc:
            result = await failure_result(profile, exc, None)
        run.result = result
        if not _retry(result, run, behaviour):
            return
        await _think(behaviour.retype_s, rng)


async def _softap_flow(
    behaviour: PhoneBehaviour,
    run: PhoneRun,
    profile: Profile,
    target: Target,
    request: ProvisionRequest,
    rng: random.Random,
) -> None:
    """The native SoftAP flow with a user in it: the phone joins the device's AP, opens the
    session, and the user types while the phone sits on a network without internet; the OS
    may leave it (the session vanishes, the device must cope) and the user rejoins."""
    assert request.setup_code is not None
    think = behaviour.think_s
    rejoins = busy = 0
    while True:
        prov = Provisioner(profile, target, request.setup_code)
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(prov)
                typing = rng.uniform(*think)
                limit = behaviour.drops_no_internet_after_s
                if limit is not None and typing > limit:
                    await asyncio.sleep(limit)
                    run.drops += 1
                    run.story.append(f"the phone left the device's AP after {limit:g} s")
                    stack.pop_all()  # vanish: no END_SESSION, the link just goes away
                    await _vanish(prov)
                    if rejoins >= behaviour.max_rejoins:
                        run.result = await failure_result(
                            profile, _lost("the phone kept leaving the device's network"), None
                        )
                        return
                    rejoins += 1
                    await _think(behaviour.rejoin_s, rng)
                    think = behaviour.retype_s  # the user types faster the second time
                    continue
                await asyncio.sleep(typing)
                while True:
                    typed, wrong = _type(request.passphrase, behaviour, rng)
                    run.tries += 1
                    run.typos += wrong
                    outcome = await prov.attempt(
                        request.ssid,
                        typed,
                        hidden=request.hidden,
                        outcome_timeout=request.outcome_timeout,
                        activation=request.activation,
                    )
                    run.result = prov.result(outcome)
                    if not _retry(run.result, run, behaviour):
                        return
                    await _think(behaviour.retype_s, rng)
                    prov.restart_clock()
        except DeviceSimError as exc:
            wait_ms = getattr(exc, "retry_after_ms", 0) or 0
            if exc.code is Code.BUSY and wait_ms and busy < MAX_BUSY_RETRIES:
                # The device still holds the session the phone lost (until its idle timeout);
                # the app waits as long as the device says, then tries again.
                busy += 1
                run.story.append(f"device busy: retrying in {wait_ms / 1000:g} s")
                await asyncio.sleep(min(wait_ms / 1000, MAX_BUSY_WAIT_S))
                continue
            run.result = await failure_result(profile, exc, None)
            return


async def _vanish(prov: Provisioner) -> None:
    link = prov.link
    if link is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await link.__aexit__(None, None, None)


def _lost(detail: str) -> DeviceSimError:
    from ...errors import DeviceUnreachable

    return DeviceUnreachable(detail)


def _refused(detail: str) -> dict[str, Any]:
    return {
        "state": "failed",
        "code": int(Code.DEVICE_UNREACHABLE),
        "code_name": Code.DEVICE_UNREACHABLE.name,
        "detail": detail,
    }


def _retry(result: Mapping[str, Any], run: PhoneRun, behaviour: PhoneBehaviour) -> bool:
    """A wrong password and tries left: the user types it again."""
    again = (
        result.get("code_name") == Code.WRONG_CREDENTIALS.name and run.tries < behaviour.max_tries
    )
    if again:
        run.story.append("wrong password: typing it again")
    return again


def _type(
    passphrase: Secret | None, behaviour: PhoneBehaviour, rng: random.Random
) -> tuple[Secret | None, bool]:
    """The password as typed: with ``typo_probability`` one character is off."""
    if passphrase is None or rng.random() >= behaviour.typo_probability:
        return passphrase, False
    text = passphrase.reveal()
    i = rng.randrange(len(text))
    wrong = "x" if text[i] != "x" else "y"
    return Secret(text[:i] + wrong + text[i + 1 :]), True


async def _think(span: tuple[float, float], rng: random.Random) -> None:
    """The user's time (reading, typing): real waiting, as long as a person takes."""
    seconds = rng.uniform(*span)
    if seconds > 0:
        await asyncio.sleep(seconds)
