"""The version of recbench (it enters every result's cache key)."""

__version__ = "0.1.0"
