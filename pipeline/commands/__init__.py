"""One module per qatflow subcommand; each exposes register(subparsers)."""
