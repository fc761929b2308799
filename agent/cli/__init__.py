"""The ``network-mapper`` command line (see :mod:`agent.cli.main`)."""
