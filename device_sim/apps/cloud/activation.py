"""The activation rules: zero-touch, claim and registration, the binding rule and idempotency.

:func:`activate` runs as one database transaction. In order:

1. the unit must be imported, and the request must prove what its mode needs: the factory client
   certificate of this unit (zero-touch, claim), the claim token (claim), a registration key
   (registration);
2. a ``(device_id, request_id)`` seen before returns the stored response (a retry after a crash);
3. the account: the supply-chain record (zero-touch), the named account (claim), the named one or
   else the supply-chain one (registration);
4. the binding rule: bound to another account without ``after_reset`` -> 409
   ``claimed_by_another_account``; with ``after_reset`` (or when unbound) the binding is replaced,
   every credential of the old one revoked and the generation bumped; bound to the same account
   -> success within the current generation. A registration key is the same on every unit of a
   batch, so it never touches a unit that is bound: a registration for a bound unit must also
   carry the unit's factory client certificate (else 403);
5. when the binding changes in claim mode: an expired token -> 410, a used token (without
   ``after_reset``) -> 409 ``claim_token_used``.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from ...security.secret import Secret
from .db import (
    DEVICE_USER_PREFIX,
    MAX_TEXT,
    MIN_PASSWORD,
    CloudDb,
    hash_password,
    issue_token,
    name_field,
    revoke_all,
    sha256_hex,
    text_field,
)
from .errors import CloudApiError, bad_request, rejected
from .tls import PeerCertificate

__all__ = ["MODES", "ActivationRequest", "activate"]

MODES = ("zero-touch", "claim", "registration")
PASSWORD_MODES = ("user", "cloud")


@dataclass(frozen=True)
class ActivationRequest:
    """A parsed ``POST /v1/activate`` body; secrets are :class:`Secret` (redacted in reprs)."""

    mode: str
    request_id: str
    device_id: str
    after_reset: bool = False
    account: str | None = None
    claim_token: Secret | None = None
    key_id: str | None = None
    key_secret: Secret | None = None
    password_mode: str | None = None
    device_password: Secret | None = None

    @classmethod
    def from_json(cls, body: Any) -> ActivationRequest:
        """Validate a request body. Fields a mode does not use are ignored.

        Raises:
            CloudApiError: 400 bad_request.
        """
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        mode = body.get("mode")
        if mode not in MODES:
            raise bad_request(f"mode: one of {', '.join(MODES)} is required")
        after_reset = body.get("after_reset", False)
        if not isinstance(after_reset, bool):
            raise bad_request("after_reset: a boolean is required")
        fields: dict[str, Any] = {
            "mode": mode,
            "request_id": text_field(body, "request_id", where=""),
            "device_id": name_field(body, "device_id"),
            "after_reset": after_reset,
        }
        if mode == "claim":
            fields["account"] = name_field(body, "account")
            fields["claim_token"] = Secret(str(text_field(body, "claim_token", where="")))
        elif mode == "registration":
            fields.update(_registration_fields(body))
        return cls(**fields)


def _registration_fields(body: dict[str, Any]) -> dict[str, Any]:
    key = body.get("registration")
    if not isinstance(key, dict):
        raise bad_request("registration: an object {key_id, secret} is required")
    password = body.get("device_password")
    password_mode = body.get("password_mode", "cloud" if password is None else "user")
    if password_mode not in PASSWORD_MODES:
        raise bad_request("password_mode: 'user' or 'cloud'")
    if password_mode == "user" and (
        not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_TEXT
    ):
        raise bad_request(f"device_password: {MIN_PASSWORD}-{MAX_TEXT} characters are required")
    if password_mode == "cloud" and password is not None:
        raise bad_request("device_password: not allowed with password_mode 'cloud'")
    return {
        "account": name_field(body, "account") if body.get("account") is not None else None,
        "key_id": text_field(key, "key_id", where="registration."),
        "key_secret": Secret(str(text_field(key, "secret", where="registration."))),
        "password_mode": password_mode,
        "device_password": Secret(password) if isinstance(password, str) else None,
    }


def activate(
    db: CloudDb, req: ActivationRequest, peer: PeerCertificate | None, now: float
) -> tuple[dict[str, Any], bool]:
    """Apply the activation rules in one transaction; returns (response, replayed).

    ``peer`` is the TLS-verified client certificate, if the device presented one.

    Raises:
        CloudApiError: 403 ``activation_rejected``, 409 ``claimed_by_another_account``,
            ``claim_token_used`` or ``request_id_conflict``, 410 ``claim_token_expired``.
    """
    with db.transaction() as conn:
        unit = conn.execute("SELECT * FROM units WHERE device_id = ?", (req.device_id,)).fetchone()
        if unit is None:
            raise rejected(f"unknown device {req.device_id}")
        _authenticate(db, req, dict(unit), peer)
        stored = conn.execute(
            "SELECT mode, response FROM activations WHERE device_id = ? AND request_id = ?",
            (req.device_id, req.request_id),
        ).fetchone()
        if stored is not None:
            if stored["mode"] != req.mode:
                raise CloudApiError(
                    409,
                    "request_id_conflict",
                    f"request_id was used for a {stored['mode']} activation",
                )
            return json.loads(stored["response"]), True
        account = _account(db, req, unit["serial"])
        binding = conn.execute(
            "SELECT account, generation FROM bindings WHERE device_id = ?", (req.device_id,)
        ).fetchone()
        bound_to = binding["account"] if binding is not None else None
        generation = binding["generation"] if binding is not None else 0
        if req.mode == "registration" and bound_to is not None and not _is_unit(peer, req, unit):
            # The fleet key proves "a unit of this batch", not "this unit": with it alone anyone
            # could rebind (after_reset) or re-credential a unit that someone owns.
            raise rejected(
                "the device is bound; registering it again needs its factory client "
                "certificate, not only the fleet registration key"
            )
        if bound_to is not None and bound_to != account and not req.after_reset:
            raise CloudApiError(
                409,
                "claimed_by_another_account",
                "the device is bound to another account; factory-reset it first",
            )
        rebind = bound_to is None or req.after_reset
        if req.mode == "claim":
            _check_claim(unit, rebind=rebind, after_reset=req.after_reset, now=now)
            conn.execute(
                "UPDATE units SET claim_used_at = CASE WHEN ? THEN ? ELSE "
                "COALESCE(claim_used_at, ?) END WHERE serial = ?",
                (rebind, now, now, unit["serial"]),
            )
        if rebind:
            revoke_all(conn, req.device_id, now)
            generation += 1
            conn.execute(
                "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?)",
                (req.device_id, account, req.mode, now, generation),
            )
        response: dict[str, Any] = {
            "device_id": req.device_id,
            "account": account,
            "mode": req.mode,
            "generation": generation,
            "credentials": {"token": issue_token(conn, req.device_id, account, generation, now)},
        }
        if req.mode == "registration":
            response.update(_device_user(db, req, account, generation, now))
        conn.execute(
            "INSERT INTO activations VALUES (?, ?, ?, ?, ?)",
            (req.device_id, req.request_id, req.mode, json.dumps(response), now),
        )
    return response, False


def _authenticate(
    db: CloudDb, req: ActivationRequest, unit: dict[str, Any], peer: PeerCertificate | None
) -> None:
    if req.mode in ("zero-touch", "claim"):
        if peer is None:
            raise rejected(f"{req.mode} needs the device's factory client certificate")
        if not _is_unit(peer, req, unit):
            raise rejected("the client certificate is not the one imported for this device")
    elif peer is not None and not _is_unit(peer, req, unit):
        raise rejected("the client certificate is not the one imported for this device")
    if req.mode == "claim":
        assert req.claim_token is not None
        expected = unit["claim_token_sha256"]
        if expected is None or not hmac.compare_digest(
            sha256_hex(req.claim_token.reveal()), expected
        ):
            raise rejected("wrong claim token")
    if req.mode == "registration":
        assert req.key_secret is not None
        row = db.conn.execute(
            "SELECT secret_sha256 FROM registration_keys WHERE key_id = ?", (req.key_id,)
        ).fetchone()
        if row is None or not hmac.compare_digest(
            sha256_hex(req.key_secret.reveal()), row["secret_sha256"]
        ):
            raise rejected("invalid registration key")


def _is_unit(peer: PeerCertificate | None, req: ActivationRequest, unit: Any) -> bool:
    """Whether the TLS-verified client certificate is the one imported for this unit."""
    return (
        peer is not None
        and peer.device_id == req.device_id
        and hmac.compare_digest(peer.fingerprint_sha256, unit["cert_fingerprint_sha256"])
        and (peer.serial is None or peer.serial == unit["serial"])
    )


def _account(db: CloudDb, req: ActivationRequest, serial: str) -> str:
    if req.mode != "zero-touch" and req.account is not None:
        if not db.account_exists(req.account):
            raise rejected(f"no account {req.account}")
        return req.account
    row = db.conn.execute("SELECT account FROM supply_chain WHERE serial = ?", (serial,)).fetchone()
    if row is None:
        raise rejected(
            "no supply-chain record"
            if req.mode == "zero-touch"
            else "no account named and no supply-chain record"
        )
    return str(row["account"])


def _check_claim(unit: Any, *, rebind: bool, after_reset: bool, now: float) -> None:
    """Expiry and single use matter only when the claim changes the binding."""
    if not rebind:
        return
    if unit["claim_expires_at"] is not None and now > unit["claim_expires_at"]:
        raise CloudApiError(410, "claim_token_expired", "the claim token has expired")
    if unit["claim_used_at"] is not None and not after_reset:
        raise CloudApiError(409, "claim_token_used", "the claim token was already used")


def _device_user(
    db: CloudDb, req: ActivationRequest, account: str, generation: int, now: float
) -> dict[str, str]:
    """Create (or replace) the device user ``dev-<device_id>``; the only thing a key may make."""
    name = DEVICE_USER_PREFIX + req.device_id
    cloud = req.password_mode == "cloud"
    if cloud:
        password = secrets.token_urlsafe(18)
    else:
        assert req.device_password is not None
        password = req.device_password.reveal()
    db.conn.execute(
        "INSERT OR REPLACE INTO device_users VALUES (?, ?, ?, ?, ?, ?, NULL)",
        (name, req.device_id, account, hash_password(password), generation, now),
    )
    return {"device_user": name, "device_password": password} if cloud else {"device_user": name}
