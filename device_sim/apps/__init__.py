"""The tools around the device: the command line (``cli.py`` and ``commands/``), the demo, the
QA bench, fleets, the factory line, the cloud emulator, the load test, the doctor, the virtual
BLE and network harnesses, and the stories a scenario tells. The device (everything else under
``device_sim/``) never imports them (``scripts/check_layers.py``)."""
