"""The BLE side of ACME's onboarding app: finding a device that waits to be set up."""
