"""The materials store: subjects, material types, versioned encrypted materials, audit and sync state.

It knows nothing of HTTP, connectors or Airflow; everything above it imports it, never the reverse.
"""
