"""NetworkManager's D-Bus names and numbers, in one place (NetworkManager 1.x D-Bus API).

Interface, path and property names, and the enums this project reads: device states and state
reasons, active-connection states, connectivity, access-point flags and Wi-Fi capabilities.
Values are those of ``nm-dbus-interface.h`` / the "D-Bus API Types" page of the NetworkManager
reference manual.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

BUS_NAME = "org.freedesktop.NetworkManager"
MANAGER_PATH = "/org/freedesktop/NetworkManager"
SETTINGS_PATH = "/org/freedesktop/NetworkManager/Settings"

MANAGER_IFACE = "org.freedesktop.NetworkManager"
SETTINGS_IFACE = "org.freedesktop.NetworkManager.Settings"
CONNECTION_IFACE = "org.freedesktop.NetworkManager.Settings.Connection"
DEVICE_IFACE = "org.freedesktop.NetworkManager.Device"
WIRELESS_IFACE = "org.freedesktop.NetworkManager.Device.Wireless"
AP_IFACE = "org.freedesktop.NetworkManager.AccessPoint"
ACTIVE_IFACE = "org.freedesktop.NetworkManager.Connection.Active"
IP4_CONFIG_IFACE = "org.freedesktop.NetworkManager.IP4Config"
PROPS_IFACE = "org.freedesktop.DBus.Properties"

# D-Bus error names NetworkManager and the bus answer with (mapped in client.py).
ERR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
ERR_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
ERR_NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"
ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
ERR_NM_PERMISSION_DENIED = "org.freedesktop.NetworkManager.PermissionDenied"
ERR_NM_UNKNOWN_DEVICE = "org.freedesktop.NetworkManager.UnknownDevice"
ERR_NM_UNKNOWN_CONNECTION = "org.freedesktop.NetworkManager.UnknownConnection"
ERR_NM_DEVICE_NOT_ALLOWED = "org.freedesktop.NetworkManager.Device.NotAllowed"


class DeviceType(IntEnum):
    UNKNOWN = 0
    ETHERNET = 1
    WIFI = 2


class DeviceState(IntEnum):
    UNKNOWN = 0
    UNMANAGED = 10
    UNAVAILABLE = 20
    DISCONNECTED = 30
    PREPARE = 40
    CONFIG = 50
    NEED_AUTH = 60
    IP_CONFIG = 70
    IP_CHECK = 80
    SECONDARIES = 90
    ACTIVATED = 100
    DEACTIVATING = 110
    FAILED = 120


class DeviceStateReason(IntEnum):
    """NMDeviceStateReason (the subset with a meaning for Wi-Fi onboarding, plus neighbours)."""

    NONE = 0
    UNKNOWN = 1
    NOW_MANAGED = 2
    NOW_UNMANAGED = 3
    CONFIG_FAILED = 4
    IP_CONFIG_UNAVAILABLE = 5
    IP_CONFIG_EXPIRED = 6
    NO_SECRETS = 7
    SUPPLICANT_DISCONNECT = 8
    SUPPLICANT_CONFIG_FAILED = 9
    SUPPLICANT_FAILED = 10
    SUPPLICANT_TIMEOUT = 11
    PPP_START_FAILED = 12
    PPP_DISCONNECT = 13
    PPP_FAILED = 14
    DHCP_START_FAILED = 15
    DHCP_ERROR = 16
    DHCP_FAILED = 17
    SHARED_START_FAILED = 18
    SHARED_FAILED = 19
    USER_REQUESTED = 39
    CARRIER = 40
    CONNECTION_ASSUMED = 41
    SUPPLICANT_AVAILABLE = 42
    DEPENDENCY_FAILED = 50
    NEW_ACTIVATION = 60
    SSID_NOT_FOUND = 53
    IP_METHOD_UNSUPPORTED = 54


class ActiveState(IntEnum):
    UNKNOWN = 0
    ACTIVATING = 1
    ACTIVATED = 2
    DEACTIVATING = 3
    DEACTIVATED = 4


class Connectivity(IntEnum):
    UNKNOWN = 0
    NONE = 1
    PORTAL = 2
    LIMITED = 3
    FULL = 4


class ApFlags(IntFlag):
    NONE = 0x0
    PRIVACY = 0x1
    WPS = 0x2
    WPS_PBC = 0x4
    WPS_PIN = 0x8


class ApSecurityFlags(IntFlag):
    """NM80211ApSecurityFlags (WpaFlags / RsnFlags)."""

    NONE = 0x0
    PAIR_WEP40 = 0x1
    PAIR_WEP104 = 0x2
    PAIR_TKIP = 0x4
    PAIR_CCMP = 0x8
    GROUP_WEP40 = 0x10
    GROUP_WEP104 = 0x20
    GROUP_TKIP = 0x40
    GROUP_CCMP = 0x80
    KEY_MGMT_PSK = 0x100
    KEY_MGMT_802_1X = 0x200
    KEY_MGMT_SAE = 0x400
    KEY_MGMT_OWE = 0x800
    KEY_MGMT_OWE_TM = 0x1000
    KEY_MGMT_EAP_SUITE_B_192 = 0x2000


class WifiCapabilities(IntFlag):
    """NMDeviceWifiCapabilities (Device.Wireless.WirelessCapabilities)."""

    NONE = 0x0
    CIPHER_WEP40 = 0x1
    CIPHER_WEP104 = 0x2
    CIPHER_TKIP = 0x4
    CIPHER_CCMP = 0x8
    WPA = 0x10
    RSN = 0x20
    AP = 0x40
    ADHOC = 0x80
    FREQ_VALID = 0x100
    FREQ_2GHZ = 0x200
    FREQ_5GHZ = 0x400
    MESH = 0x1000
    IBSS_RSN = 0x2000


class ManagerState(IntEnum):
    UNKNOWN = 0
    ASLEEP = 10
    DISCONNECTED = 20
    DISCONNECTING = 30
    CONNECTING = 40
    CONNECTED_LOCAL = 50
    CONNECTED_SITE = 60
    CONNECTED_GLOBAL = 70
