"""The support kit: per-error documentation generated from ``gatt_profile.yaml``."""
