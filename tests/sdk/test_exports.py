"""What a submitter catches comes from gce.sdk itself: every exception and warning class the SDK's
modules define is one of gce.sdk's names, and each name loads."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import gce.sdk


def test_every_error_and_warning_the_sdk_defines_is_exported():
    defined = set()
    for info in pkgutil.iter_modules(gce.sdk.__path__):
        module = importlib.import_module(f"gce.sdk.{info.name}")
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, (Exception, Warning)) and value.__module__ == module.__name__
                    and not name.startswith("_")):
                defined.add(name)
    assert defined - set(gce.sdk.__all__) == set()
    for name in gce.sdk.__all__:
        assert getattr(gce.sdk, name) is not None
