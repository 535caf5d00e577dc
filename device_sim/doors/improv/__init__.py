"""The Improv Wi-Fi personality of the BLE door (improv-wifi.com, BLE spec revision 2.4)."""
