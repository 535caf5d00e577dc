"""The unit's label: a QR code with the onboarding payload, and the same facts as text.

Payload (ASCII, one QR code, byte mode)::

    DSIM:1;ID:<device_id, 16 hex>;SC:<setup code, 8 digits>;CT:<claim token, 26 base32>;;

The label carries secrets by design (setup code, claim token, SoftAP passphrase): it is the one
place they exist after the factory. Payloads are passed around as :class:`Secret`.

PNG: segno's PNG, composed with Pillow (text under the QR). SVG: segno's SVG nested in an outer
SVG with ``<text>`` elements. Pillow and zxing-cpp (the ``factory`` extra) are imported lazily.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import segno

from ...security.secret import Secret
from ...security.setup_code import format_setup_code, normalize_setup_code

PAYLOAD_VERSION = 1
_PAYLOAD_RE = re.compile(
    r"DSIM:1;ID:(?P<id>[0-9a-f]{16});SC:(?P<sc>[0-9]{8});CT:(?P<ct>[A-Z2-7]{26});;"
)
_SCALE = 6
_BORDER = 4
_FONT_SIZE = 15
_LINE = 22
_MARGIN = 12


@dataclass(frozen=True)
class LabelPayload:
    device_id: str
    setup_code: Secret
    claim_token: Secret


@dataclass(frozen=True)
class LabelText:
    """The human-readable part of the label."""

    serial: str
    device_id: str
    setup_code: Secret
    softap_ssid: str
    softap_passphrase: Secret

    def fields(self) -> list[tuple[str, str]]:
        return [
            ("Serial", self.serial),
            ("Device ID", self.device_id),
            ("Setup code", format_setup_code(self.setup_code.reveal())),
            ("Setup Wi-Fi", self.softap_ssid),
            ("Wi-Fi password", self.softap_passphrase.reveal()),
        ]


@dataclass(frozen=True)
class PersonalityLabel:
    """A personality's own label, next to the device-sim one: its QR (e.g. Espressif's
    provisioning JSON) and a few text lines. Secrets are revealed only when rendered."""

    lines: tuple[tuple[str, str], ...]

    def fields(self) -> list[tuple[str, str]]:
        return list(self.lines)


def make_payload(device_id: str, setup_code: Secret, claim_token: Secret) -> Secret:
    """The QR payload. Raises ValueError if a field is malformed (the message names only the
    field, never its value)."""
    text = (
        f"DSIM:{PAYLOAD_VERSION};ID:{device_id};SC:{normalize_setup_code(setup_code)};"
        f"CT:{claim_token.reveal()};;"
    )
    if not _PAYLOAD_RE.fullmatch(text):
        raise ValueError(
            "label payload: device id must be 16 lowercase hex, claim token 26 base32 characters"
        )
    return Secret(text)


def parse_payload(text: str | Secret) -> LabelPayload:
    """Split a payload into its fields. Raises ValueError (without quoting it) if malformed."""
    raw = text.reveal() if isinstance(text, Secret) else text
    m = _PAYLOAD_RE.fullmatch(raw)
    if not m:
        raise ValueError("not a DSIM:1 label payload")
    return LabelPayload(m["id"], Secret(m["sc"]), Secret(m["ct"]))


def make_qr(payload: Secret) -> segno.QRCode:
    """The label's QR symbol: made once, rendered as PNG and as SVG (encoding it, the mask
    search most of all, is most of a label's cost)."""
    return segno.make_qr(payload.reveal(), error="m", mode="byte")


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError, TypeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _qr_image(qr: segno.QRCode) -> Any:
    """The symbol as a grayscale PIL image, straight from its module matrix (quiet zone of
    ``_BORDER`` modules, ``_SCALE`` pixels a module): no PNG written and decoded again."""
    from PIL import Image

    width = len(qr.matrix[0]) + 2 * _BORDER
    blank = b"\xff" * width
    rows = [blank] * _BORDER
    for row in qr.matrix:
        rows.append(
            b"\xff" * _BORDER + bytes(0 if dark else 255 for dark in row) + b"\xff" * _BORDER
        )
    rows += [blank] * _BORDER
    image = Image.frombytes("L", (width, len(rows)), b"".join(rows))
    return image.resize((width * _SCALE, len(rows) * _SCALE), Image.Resampling.NEAREST)


def render_png(
    payload: Secret, text: LabelText | PersonalityLabel, qr: segno.QRCode | None = None
) -> bytes:
    """The label as PNG bytes (QR on top, text lines below); ``qr``: the payload's symbol
    when it is made already."""
    from PIL import Image, ImageDraw

    qr_img = _qr_image(qr or make_qr(payload))
    font = _font(_FONT_SIZE)
    fields = text.fields()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    name_w = max(int(probe.textlength(name + ":", font=font)) for name, _ in fields) + 8
    value_w = max(int(probe.textlength(value, font=font)) for _, value in fields)
    width = max(qr_img.width, name_w + value_w + 2 * _MARGIN)
    height = qr_img.height + len(fields) * _LINE + 2 * _MARGIN
    label = Image.new("L", (width, height), 255)
    label.paste(qr_img, ((width - qr_img.width) // 2, 0))
    draw = ImageDraw.Draw(label)
    for i, (name, value) in enumerate(fields):
        y = qr_img.height + i * _LINE
        draw.text((_MARGIN, y), name + ":", fill=0, font=font)
        draw.text((_MARGIN + name_w, y), value, fill=0, font=font)
    out = io.BytesIO()
    label.save(out, format="PNG", optimize=False)
    return out.getvalue()


def render_svg(
    payload: Secret, text: LabelText | PersonalityLabel, qr: segno.QRCode | None = None
) -> bytes:
    """The label as an SVG document: segno's QR SVG nested in an outer SVG, plus text."""
    qr = qr or make_qr(payload)
    qr_w, _ = qr.symbol_size(scale=_SCALE, border=_BORDER)
    fields = text.fields()
    name_w = 9 * max(len(name) + 2 for name, _ in fields)
    width = max(qr_w, name_w + 9 * max(len(value) for _, value in fields) + 2 * _MARGIN)
    height = qr_w + len(fields) * _LINE + 2 * _MARGIN
    inner = qr.svg_inline(scale=_SCALE, border=_BORDER, omitsize=False)
    inner = inner.replace("<svg ", f'<svg x="{(width - qr_w) // 2}" y="0" ', 1)
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        inner,
    ]
    for i, (name, value) in enumerate(fields):
        y = qr_w + i * _LINE + _FONT_SIZE
        parts.append(
            f'<text x="{_MARGIN}" y="{y}" font-family="monospace" '
            f'font-size="{_FONT_SIZE}" data-field={quoteattr(name)}>'
            f'{escape(name)}: <tspan x="{_MARGIN + name_w}">{escape(value)}</tspan>'
            f"</text>"
        )
    parts.append("</svg>\n")
    return "\n".join(parts).encode("utf-8")


def decode_qr_texts(png_path: str | Path) -> list[str]:
    """The texts of every QR code zxing-cpp finds in the image (empty if none).

    Raises OSError (unreadable file) or PIL's UnidentifiedImageError (not an image).
    """
    import zxingcpp
    from PIL import Image

    with Image.open(png_path) as img:
        gray = img.convert("L")
    found = zxingcpp.read_barcodes(
        gray,
        formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
        text_mode=zxingcpp.TextMode.Plain,
    )
    return [b.text for b in found if b.valid]
