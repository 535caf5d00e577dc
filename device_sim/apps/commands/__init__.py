"""The implementations of the ``device-sim`` subcommands; :mod:`device_sim.apps.cli` parses and
dispatches.

Each function takes the parsed :class:`argparse.Namespace` and returns the exit code.

======================  ==========================================================
:mod:`.device`          ``init`` (identity, label) and ``run`` (config file + flags -> daemon)
:mod:`.client`          ``client scan|networks|provision|portal`` and their output
:mod:`.admin`           ``codes``, ``doctor``, ``ctl``
:mod:`.output`          ``--json`` or human output, shared by the above
======================  ==========================================================
"""
