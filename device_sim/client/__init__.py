"""The phone-side reference client: BLE (bleak) and SoftAP (HTTP) links, flows, DHCP and
captive-portal detection."""
