"""`python -m dealflow` is the `dealflow` command."""

from dealflow.main import main

main()
