"""``python -m edge_sdk``: the ``edge-classify`` command, where its script is not on the PATH
(a venv that is not activated, a system service calling the interpreter directly)."""

from edge_sdk.cli.main import main

main()
