"""One module per subcommand, each with ``run(args) -> int``: wiring, no measurement logic."""
