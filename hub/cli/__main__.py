"""``python -m hub.cli`` is ``onecert``."""

from hub.cli import main

main()
