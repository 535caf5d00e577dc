"""The NetworkManager network backend (Raspberry Pi OS bookworm and later), over D-Bus with
dbus-fast."""
