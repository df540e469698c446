"""`python -m rfcli ...` is `rf ...`: for a Python with rf on its path but no `rf` script beside it."""

from rfcli.cli.app import main

main()
