"""The package version, in a module of its own so that any module can read it without importing
the public facade (``res2net/__init__``), which imports nearly everything."""

__version__ = "0.1.0"
