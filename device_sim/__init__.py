"""device-sim: the device half of Wi-Fi onboarding, as software."""

from .codes import Code, MessageType, State
from .errors import DeviceSimError, OnboardingError

__all__ = ["Code", "DeviceSimError", "MessageType", "OnboardingError", "State"]
__version__ = "0.1.0"
