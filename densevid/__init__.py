"""The densevid command line and pipeline config."""

__version__ = "0.1.0"
