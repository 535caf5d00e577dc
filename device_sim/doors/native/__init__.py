"""The native personality: the SRP6a session protocol over BLE (device side and phone side)."""
