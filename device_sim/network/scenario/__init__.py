"""Scenario files: the simulated Wi-Fi world the simulated backend plays.

A scenario is YAML (format in ``scenarios/README.md``). One declarative model, :data:`MODEL`,
both validates a file and generates its JSON Schema (:func:`json_schema`, for editor
completion): every key's type, range, choices, default and meaning are written once.
Validation reports every error of a file at once (:class:`~device_sim.errors.ConfigErrors`),
each naming its place, e.g. ``scenarios/x.yaml: access_points[1].band``.

The world holds the device's radio (bands, antenna offset, IPv6, clock), BSSes per SSID with
band, channel, RSSI and their own fate (a mesh node that fails, band steering), the steps after
association as distributions (a delay range, jitter, a failure probability per attempt, drawn
from a seeded generator), IPv6-only networks with or without NAT64, network time, and what the
cloud does when the device activates. Over time: a ``timeline`` changes the world after boot or
after the device is first online (an access point off and back, a router replaced, a lease not
renewed, DNS or the internet down for a while), a ``history`` gives the device the networks it
saved before the story starts, and a ``story`` says what ``demo`` checks beyond the outcome (the
event sequence, doors reopening, the time back online, the phone's sessions) and what its
phone does (re-onboarding once the doors reopen).
"""

from __future__ import annotations

from .files import list_scenarios, load_scenario, parse_scenario, scenarios_dir
from .model import (
    CLOUD_BEHAVIOURS,
    DEFAULT_MIN_RSSI_DBM,
    ENV_SCENARIOS,
    RESULTS,
    AfterAssociation,
    AssociationStep,
    CaptivePortalStep,
    CloudBehaviour,
    DefaultCredentials,
    DeviceRadio,
    DhcpStep,
    DnsStep,
    History,
    InternetStep,
    NtpStep,
    Scenario,
    ScenarioAccessPoint,
    Step,
    Story,
    StoryPhone,
    TimelineStep,
    TlsStep,
)
from .spec import MODEL, json_schema, schema_text

__all__ = [
    "CLOUD_BEHAVIOURS",
    "DEFAULT_MIN_RSSI_DBM",
    "ENV_SCENARIOS",
    "MODEL",
    "RESULTS",
    "AfterAssociation",
    "AssociationStep",
    "CaptivePortalStep",
    "CloudBehaviour",
    "DefaultCredentials",
    "DeviceRadio",
    "DhcpStep",
    "DnsStep",
    "History",
    "InternetStep",
    "NtpStep",
    "Scenario",
    "ScenarioAccessPoint",
    "Step",
    "Story",
    "StoryPhone",
    "TimelineStep",
    "TlsStep",
    "json_schema",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
    "scenarios_dir",
    "schema_text",
]
