"""One module per subcommand, each exposing ``run(args) -> int``: wiring, no measurement logic.

A command raises :class:`~wsprof.errors.WsprofError` for anything that goes
wrong; ``wsprof.cli.main`` alone turns it into one line and an exit code.
"""
