"""SoftAP door: a temporary access point with DHCP, catch-all DNS and a captive portal."""
