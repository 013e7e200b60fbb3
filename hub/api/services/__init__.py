"""Typed services behind the routes: they take a session and return wire models, knowing no HTTP."""
