"""One error hierarchy: every exception class the project defines is in gateway/errors.py and
derives from GatewayError (click exceptions excepted: they are a command's exits, not errors,
and live with their command: gateway/cli/ or a driver's CLI tool)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import pytest

from gateway import errors
from gateway.errors import GatewayError

PACKAGES = ("gateway", "drivers", "firmware_bridge", "edge_models", "brain_reader")


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined at module level in the project's packages, by
    ``module.name``."""
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and issubclass(obj, BaseException)
                        and obj.__module__ == module.__name__):
                    found[f"{module.__name__}.{name}"] = obj
    return found


CLASSES = _exception_classes()


def test_the_walk_finds_the_hierarchy() -> None:
    assert "gateway.errors.GatewayError" in CLASSES
    assert len([c for c in CLASSES.values() if c.__module__ == "gateway.errors"]) > 30


@pytest.mark.parametrize("where", sorted(CLASSES))
def test_every_exception_is_a_gateway_error_defined_in_gateway_errors(where: str) -> None:
    cls = CLASSES[where]
    if issubclass(cls, click.ClickException):
        command = cls.__module__.startswith(("gateway.cli.", "brain_reader.cli")) or (
            cls.__module__.endswith("_cmd"))  # a driver's CLI tool (drivers/<name>/*_cmd.py)
        assert command, f"{where}: click exceptions belong to a command module"
        return
    assert issubclass(cls, GatewayError), f"{where} does not derive from GatewayError"
    assert cls.__module__ == "gateway.errors", f"{where} is defined outside gateway/errors.py"


def test_names_are_unique_and_decode_errors_stay_value_errors() -> None:
    names = [c.__name__ for c in CLASSES.values()]
    assert len(names) == len(set(names))
    for cls in (errors.RegisterDecodeError, errors.ConversionError, errors.NodeFrameError,
                errors.CobsError, errors.MessageError, errors.SparkplugDecodeError,
                errors.JsonTooDeep, errors.PlanError, errors.ImageError):
        assert issubclass(cls, ValueError), cls
    assert issubclass(errors.PayloadError, OSError)
