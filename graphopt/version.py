"""The version, importable without importing anything else (the CLI reports it before loading the library)."""

__version__ = "0.1.0"
