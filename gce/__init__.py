"""gce: a self-hosted function-as-a-service endpoint."""

__version__ = "0.1.0"
