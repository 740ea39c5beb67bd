"""Wiring: configuration, pipeline construction, runners and the command line."""
