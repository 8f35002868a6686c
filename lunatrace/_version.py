"""The package version, kept in one place so the wire ``runtime`` and the CLI agree."""

__version__ = "0.1.0"
