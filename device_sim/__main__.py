"""``python -m device_sim`` = the ``device-sim`` command."""

import sys

from .cli import main

sys.exit(main())
