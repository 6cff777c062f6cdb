"""ucity: an open-source smart city integrated operations platform."""

__version__ = "0.1.0"
