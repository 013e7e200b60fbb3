"""One module per route group; joined in hub.api.app."""
