from tests.daemon.conftest import make_endpoint  # noqa: F401  (the same real-endpoint factory)
