"""``python -m hub.cli`` is ``onecert``."""

from hub.cli import main

if __name__ == "__main__":  # a sync's worker process (spawned) imports this module again: it must not run
    main()
