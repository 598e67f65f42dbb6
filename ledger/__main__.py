"""`python -m ledger`: the same command line as the installed `ledger` script."""

from .cli import cli

cli(prog_name="ledger")
