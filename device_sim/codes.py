"""Wire constants: diagnostic codes, onboarding states and message types.

These enums mirror ``gatt_profile.yaml`` so that code can name them statically;
``tests/test_profile.py`` fails if the two drift apart (a value added, removed or renumbered on
one side only). The profile stays the source of the human text (messages, next steps).
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Diagnostic codes (u16 on the wire)."""

    OK = 0
    WRONG_CREDENTIALS = 101
    NETWORK_NOT_FOUND = 102
    ASSOCIATION_TIMEOUT = 103
    NO_DHCP_LEASE = 104
    DNS_FAILURE = 105
    CAPTIVE_PORTAL = 106
    NO_INTERNET = 107
    TLS_VERIFICATION_FAILED = 108
    JOIN_FAILED = 109
    UNSUPPORTED_SECURITY = 110
    INVALID_CREDENTIALS_FORMAT = 111
    TLS_CERTIFICATE_DATE = 112
    NETWORK_5GHZ_ONLY = 113
    CLOCK_NOT_SET = 114
    IPV6_ONLY_NETWORK = 115
    LINK_LOST = 116
    LEASE_LOST = 117
    DNS_LOST = 118
    INTERNET_LOST = 119
    SAVED_NETWORKS_NOT_FOUND = 120
    SAVED_NETWORK_REJECTED = 121
    SECURITY_MISMATCH = 122
    EAP_SETTINGS_INVALID = 123
    EAP_CREDENTIALS_REJECTED = 124
    EAP_IDENTITY_UNKNOWN = 125
    EAP_SERVER_UNTRUSTED = 126
    EAP_SERVER_NAME_MISMATCH = 127
    EAP_CLIENT_CERT_EXPIRED = 128
    EAP_METHOD_REFUSED = 129
    CLOUD_ACTIVATION_REJECTED = 201
    CLOUD_UNREACHABLE = 202
    CLAIM_TOKEN_EXPIRED = 203
    CLAIM_TOKEN_USED = 204
    CLAIMED_BY_ANOTHER_ACCOUNT = 205
    WRONG_SETUP_CODE = 301
    TOO_MANY_ATTEMPTS = 302
    MALFORMED_REQUEST = 303
    MESSAGE_TOO_LARGE = 304
    REPLAYED_MESSAGE = 305
    CLIENT_TIMEOUT = 306
    BUSY = 307
    SESSION_REQUIRED = 308
    UNSUPPORTED_VERSION = 309
    INVALID_STATE = 310
    INTERRUPTED = 311
    UNSUPPORTED_MEDIA_TYPE = 312
    SOFTAP_UNAVAILABLE = 313
    NOT_AUTHORIZED = 314
    DEVICE_NOT_FOUND = 401
    DEVICE_UNREACHABLE = 402
    SYSTEM_BUS_UNAVAILABLE = 501
    BLUETOOTH_UNAVAILABLE = 502
    BLUETOOTH_BLOCKED = 503
    ADVERTISING_SLOTS_FULL = 504
    WIFI_UNAVAILABLE = 505
    WIFI_BLOCKED = 506
    AP_MODE_UNSUPPORTED = 507
    WIFI_COUNTRY_NOT_SET = 508
    NETWORK_PERMISSION_DENIED = 509
    STATE_DIR_UNUSABLE = 510
    NO_DEVICE_IDENTITY = 511
    CONFIG_INVALID = 512
    SERVICE_NOT_INSTALLED = 513
    BLUEZ_VERSION_BROKEN = 514
    WIFI_COUNTRY_NOT_PERSISTED = 515
    AP_STA_UNSUPPORTED = 516
    NETWORKMANAGER_TOO_OLD = 517
    ADVERTISEMENT_TOO_LONG = 518
    INTERNAL_ERROR = 900


class State(IntEnum):
    """Onboarding states (u8 on the wire)."""

    UNPROVISIONED = 0
    SESSION_OPEN = 1
    CREDENTIALS_RECEIVED = 2
    JOINING = 3
    VERIFYING = 4
    ONLINE = 5
    FAILED = 6

    @property
    def wire_name(self) -> str:
        """The state's name as written in the profile (``session_open``)."""
        return self.name.lower()


class MessageType(IntEnum):
    """Message types (first byte of every reassembled message)."""

    PAKE_START = 0x01
    PAKE_CHALLENGE = 0x02
    PAKE_PROOF = 0x03
    PAKE_CONFIRM = 0x04
    ERROR = 0x0E
    SECURE = 0x0F
    SCAN_REQUEST = 0x20
    SCAN_RESULT = 0x21
    SET_CREDENTIALS = 0x22
    CONNECT = 0x23
    STATUS_REQUEST = 0x24
    STATUS = 0x25
    ACK = 0x26
    EVENT = 0x27
    SECURE_ERROR = 0x28
    END_SESSION = 0x29
    START_SOFTAP = 0x2A
    SET_ACTIVATION = 0x2B
    FACTORY_RESET = 0x2C
    DIAGNOSTICS_REQUEST = 0x2D
    DIAGNOSTICS = 0x2E
    LIST_NETWORKS = 0x2F
    NETWORKS = 0x30
    FORGET_NETWORK = 0x31
    CREDENTIAL_FILE = 0x32
