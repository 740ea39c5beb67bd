"""Local web UI over the ML Metadata store and artifacts of local runs."""
