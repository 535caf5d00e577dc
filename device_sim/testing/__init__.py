"""Test support that the product ships because the demo, the scripts and the tests share it:
the NetworkManager mock (python-dbusmock; :mod:`.nm_mock`) and the device daemon as a child
process (:mod:`.daemon_process`). Nothing in the daemon itself imports this package."""
