"""The ML library, usable without TFX."""
