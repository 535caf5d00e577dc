"""``python -m device_sim`` = the ``device-sim`` command."""

import sys

from .apps.cli import main

sys.exit(main())
