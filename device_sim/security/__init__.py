"""The secure session shared by every door: setup codes, SRP-6a handshake, AES-GCM channel."""

from .backoff import SetupCodeBackoff
from .secret import Secret, redact
from .session import ClientHandshake, DeviceHandshake, SecureChannel
from .setup_code import (
    SetupCodeVerifier,
    format_setup_code,
    generate_setup_code,
    make_verifier,
    normalize_setup_code,
)

__all__ = [
    "ClientHandshake",
    "DeviceHandshake",
    "Secret",
    "SecureChannel",
    "SetupCodeBackoff",
    "SetupCodeVerifier",
    "format_setup_code",
    "generate_setup_code",
    "make_verifier",
    "normalize_setup_code",
    "redact",
]
