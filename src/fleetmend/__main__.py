"""`python -m fleetmend`: the same as the `fleetmend` command."""

from fleetmend.cli.app import main

main()
