# The subcommands, one module each; every module offers add_parser(subparsers) and
# run(args) -> int, and nothing else the rest of the CLI relies on. A command module must
# never print customer data except where its user asked for it (stdout of `get`, OUTPUT).
"""``aopay-async``'s subcommands: ``get``, ``bulk``, ``demo``, ``sandbox``."""
