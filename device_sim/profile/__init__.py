"""``gatt_profile.yaml`` parsed into frozen dataclasses: the shared vocabulary of every layer.

:mod:`.model` holds the core sections and :func:`load_profile`; :mod:`.softap` the SoftAP
section; :mod:`.reader` the strict reader all of them use. A personality's own section is
parsed in its folder under :mod:`device_sim.doors`.
"""

from .model import *  # noqa: F403 - the names of model.__all__
from .model import __all__ as __all__
