"""``gatt_profile.yaml`` parsed into frozen dataclasses: the shared vocabulary of every layer.

:mod:`.model` holds the core sections and :func:`load_profile`; :mod:`.softap` the SoftAP
section; :mod:`.reader` the strict reader all of them use. A personality's own section is
parsed in its folder under :mod:`device_sim.doors`.
"""

from .model import (
    DEFAULT_PROFILE_PATH,
    GATT_PROPERTIES,
    AdvertisingDef,
    BackoffDef,
    CharacteristicDef,
    CodeDef,
    EndpointDef,
    FramingDef,
    HttpDef,
    MessageDef,
    PersonalitiesDef,
    ProbeDef,
    Profile,
    ServiceDef,
    SessionDef,
    SoftApDef,
    StateDef,
    enum_drift,
    load_profile,
    parse_profile,
)

__all__ = [
    "DEFAULT_PROFILE_PATH",
    "GATT_PROPERTIES",
    "AdvertisingDef",
    "BackoffDef",
    "CharacteristicDef",
    "CodeDef",
    "EndpointDef",
    "FramingDef",
    "HttpDef",
    "MessageDef",
    "PersonalitiesDef",
    "ProbeDef",
    "Profile",
    "ServiceDef",
    "SessionDef",
    "SoftApDef",
    "StateDef",
    "enum_drift",
    "load_profile",
    "parse_profile",
]
