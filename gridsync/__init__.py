"""gridsync: the backend that grid workers' phones sync with."""

__version__ = "0.1.0"
