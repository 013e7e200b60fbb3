"""Connectors: declarative readers of departmental systems (REST, SQL, file drop) and the sandbox."""
