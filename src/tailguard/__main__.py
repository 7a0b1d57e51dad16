"""``python -m tailguard`` runs the command line."""

from tailguard.cli import main

main()
