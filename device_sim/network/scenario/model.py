"""What a scenario is, as frozen dataclasses: the device's radio, the access points and their
fates, the steps after association, the cloud's behaviour, the timeline, the history and the
story (:mod:`.files` reads them from YAML)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ...codes import Code
from ..base import AccessPoint, Band
from ..eap import EapMethod, Phase2

ENV_SCENARIOS = "DEVICE_SIM_SCENARIOS"
DEFAULT_MIN_RSSI_DBM = -85
_MAX_DELAY_MS = 600_000


@dataclass(frozen=True)
class Step:
    """One step after association, as a distribution: a delay drawn from ``delay_ms`` ..
    ``delay_max_ms`` (uniform) plus up to ``jitter_ms`` either way, and the step's failure
    (``failure``, the first non-ok result) with ``fail_probability`` per attempt on top of its
    fixed ``result``."""

    delay_ms: int = 0
    delay_max_ms: int | None = None
    jitter_ms: int = 0
    fail_probability: float = 0.0
    result: str = "ok"

    def draw_delay_ms(self, rng: random.Random) -> int:
        delay = self.delay_ms
        if self.delay_max_ms is not None and self.delay_max_ms > self.delay_ms:
            delay = rng.randint(self.delay_ms, self.delay_max_ms)
        if self.jitter_ms:
            delay += rng.randint(-self.jitter_ms, self.jitter_ms)
        return max(0, delay)

    def draw_result(self, rng: random.Random, failure: str) -> str:
        flaky = self.result == _OK_RESULT[type(self).__name__] and self.fail_probability > 0
        if flaky and rng.random() < self.fail_probability:
            return failure
        return self.result


@dataclass(frozen=True)
class AssociationStep(Step):
    pass


@dataclass(frozen=True)
class DhcpStep(Step):
    ip: str = "192.168.1.50"
    gateway: str = "192.168.1.1"
    dns: tuple[str, ...] = ("192.168.1.1",)
    addressing: str = "ipv4"  # ipv4 | dual | ipv6-only
    ip6: str = "2001:db8:1::50"
    nat64: bool = False


@dataclass(frozen=True)
class DnsStep(Step):
    pass


@dataclass(frozen=True)
class CaptivePortalStep(Step):
    result: str = "none"  # none | portal
    login_url: str | None = None


@dataclass(frozen=True)
class InternetStep(Step):
    pass


@dataclass(frozen=True)
class NtpStep(Step):
    pass


@dataclass(frozen=True)
class TlsStep(Step):
    pass


@dataclass(frozen=True)
class AfterAssociation:
    """What happens once a BSS is chosen: association, DHCP, network time and the checks."""

    association: AssociationStep = AssociationStep()
    dhcp: DhcpStep = DhcpStep()
    dns: DnsStep = DnsStep()
    captive_portal: CaptivePortalStep = CaptivePortalStep()
    internet: InternetStep = InternetStep()
    ntp: NtpStep = NtpStep()
    tls: TlsStep = TlsStep()


_STEP_TYPES: dict[str, type[Step]] = {
    "association": AssociationStep,
    "dhcp": DhcpStep,
    "dns": DnsStep,
    "captive_portal": CaptivePortalStep,
    "internet": InternetStep,
    "ntp": NtpStep,
    "tls": TlsStep,
}
# Each step's results; the first is the good one, the second what a flaky attempt ends in.
RESULTS: dict[str, tuple[str, ...]] = {
    "association": ("ok", "timeout"),
    "dhcp": ("ok", "timeout"),
    "dns": ("ok", "fail"),
    "captive_portal": ("none", "portal"),
    "internet": ("ok", "none"),
    "ntp": ("ok", "blocked"),
    "tls": ("ok", "untrusted", "hostname_mismatch", "expired"),
}
_OK_RESULT = {_STEP_TYPES[name].__name__: results[0] for name, results in RESULTS.items()}


@dataclass(frozen=True)
class DeviceRadio:
    """The device's side of the world: its radio and its clock."""

    bands: tuple[Band, ...] = (Band.GHZ_2_4, Band.GHZ_5)
    antenna_offset_db: int = 0  # added to every BSS's RSSI (a small PCB antenna: -6)
    ipv6: bool = True  # the device's IP stack speaks IPv6 (SLAAC, AAAA)
    rtc: bool = True  # a battery-backed clock; without one the clock is unset until NTP
    clock_skew_s: int = 0  # how far the RTC is off (negative: behind)


CLOUD_BEHAVIOURS = (
    "ok",
    "unreachable",
    "rejecting",
    "claim_token_expired",
    "claimed_by_another_account",
)


@dataclass(frozen=True)
class CloudBehaviour:
    """What the cloud does when the device activates (``demo``: ``mode`` activates without
    ``--activation``)."""

    activation: str = "ok"
    mode: str | None = None  # zero-touch | claim | registration


ISSUERS = ("world", "public", "other")
"""The simulated world's certificate authorities (:mod:`device_sim.network.radius`)."""


@dataclass(frozen=True)
class RadiusAccount:
    """One account of an authentication server: ``password`` None signs in only with a
    certificate (EAP-TLS)."""

    identity: str
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RadiusServer:
    """An enterprise BSS's authentication server: the methods it offers, its certificate's
    issuer (one of :data:`ISSUERS`) and DNS name, its accounts."""

    methods: tuple[EapMethod, ...]
    issuer: str = "world"
    name: str = "radius.corp.example"
    accounts: tuple[RadiusAccount, ...] = ()


@dataclass(frozen=True)
class EapRecipe:
    """The enterprise sign-in a scenario's phone sends, its certificates named by the world's
    issuers (``ca_cert`` one of :data:`ISSUERS` or ``none``; ``client_cert`` valid, expired or
    None); :func:`device_sim.network.radius.eap_settings` makes the PEM files."""

    method: EapMethod
    identity: str
    phase2: Phase2 | None = None
    anonymous_identity: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str = "world"
    domain: str | None = None
    client_cert: str | None = None


@dataclass(frozen=True)
class ScenarioAccessPoint:
    """One simulated BSS: what scans show (``ap``, with its real SSID), its key and behaviour."""

    ap: AccessPoint
    passphrase: str | None = field(repr=False)
    after_association: AfterAssociation
    band_steering: bool = False  # on a 2.4 GHz BSS: holds dual-band clients off, to 5 GHz
    steering_holdoff_ms: int = 3000  # how long it ignores a 2.4 GHz-only device
    present: bool = True  # on the air when the world starts (a timeline step may change it)
    radius: RadiusServer | None = None  # an enterprise BSS's authentication server


TIMELINE_ACTIONS = ("ap_off", "ap_on", "passphrase", "lease", "dns_down", "internet_down")
# Actions whose target is one network's BSSes (the others may name one, else act on all).
TARGETED = frozenset({"ap_off", "ap_on", "passphrase"})


@dataclass(frozen=True)
class TimelineStep:
    """One change of the world, ``at_s`` (world seconds) after ``after`` (boot: the backend's
    start; online: the device's first successful checks), undone ``for_s`` later (None: for
    good). ``bssids``: the BSSes it acts on (empty: every network, for lease/DNS/internet)."""

    after: str
    at_s: float
    action: str
    bssids: tuple[str, ...]
    target: str  # what it acts on, for its note
    passphrase: str | None = field(default=None, repr=False)
    for_s: float | None = None


@dataclass(frozen=True)
class History:
    """What the device did before the story: the networks it saved (most recent first) and
    whether it was online on the first when the story starts (as before a power cut)."""

    networks: tuple[DefaultCredentials, ...]
    online: bool = True


@dataclass(frozen=True)
class StoryPhone:
    """The phone of ``demo``'s story: it sets the device up again once it sees ``when``."""

    when: str  # reopen: the device's doors reopened; loss: the connection was lost
    ssid: bytes
    passphrase: str | None = field(repr=False)
    hidden: bool = False


@dataclass(frozen=True)
class Story:
    """What ``demo`` checks beyond the outcome (each None: not checked)."""

    sequence: tuple[str, ...] = ()  # event phases in order ("phase" or "phase:CODE_NAME")
    doors_reopened: bool | None = None
    back_online_within_s: float | None = None  # world seconds after the network came back
    phone_sessions: int | None = None  # sessions after the first onboarding (re-onboarding)
    online_ssid: bytes | None = None  # the network it ends online on
    associations: int | None = None  # association attempts during the story
    within_s: float = 300.0  # the story's bound, in world seconds
    phone: StoryPhone | None = None


@dataclass(frozen=True)
class DefaultCredentials:
    """The credentials demos and tests use for this scenario, and the code they end with."""

    ssid: bytes
    passphrase: str | None = field(repr=False)
    hidden: bool = False
    expect: Code = Code.OK
    eap: EapRecipe | None = None  # an enterprise network's sign-in


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: str
    default_credentials: DefaultCredentials
    access_points: tuple[ScenarioAccessPoint, ...]
    after_association: AfterAssociation
    min_rssi_dbm: int = DEFAULT_MIN_RSSI_DBM
    scan_delay_ms: int = 0
    seed: int = 0
    device: DeviceRadio = DeviceRadio()
    cloud: CloudBehaviour = CloudBehaviour()
    timeline: tuple[TimelineStep, ...] = ()
    history: History | None = None
    story: Story | None = None

    def bsses(self, ssid: bytes) -> list[ScenarioAccessPoint]:
        """Every BSS broadcasting (or hiding) ``ssid``."""
        return [sap for sap in self.access_points if sap.ap.ssid == ssid]

    def heard_rssi(self, sap: ScenarioAccessPoint) -> int:
        """The RSSI the device hears from ``sap`` (its antenna offset applied)."""
        return sap.ap.rssi + self.device.antenna_offset_db
