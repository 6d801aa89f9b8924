"""YAML files validated into pydantic models, every problem with its file, line and key.

The machinery of the gateway config, for every YAML file the project reads (model
manifests, HIL scenarios, register maps, a driver's shipped tables): its own module,
below the config loader, so that a driver can read its files without importing the
loader and, through it, every driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.config.plain_errors import plain_errors
from gateway.config.yaml_reader import KeyPath, LineMap, ParsedYaml, YamlLimits, read_yaml
from gateway.errors import ConfigError, ConfigProblem

_M = TypeVar("_M", bound=BaseModel)


def parse_yaml(text: str, file: str, limits: YamlLimits | None = None) -> ParsedYaml:
    """Parse YAML text into plain data plus a line map, within ``limits`` (depth, nodes,
    alias repeats: :mod:`gateway.config.yaml_reader`); every problem has file, line, key."""
    return read_yaml(text, file, limits)


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """The line of ``path`` in a parsed file, or of its nearest ancestor."""
    if isinstance(lines, LineMap):  # knows the paths under aliases
        return lines.line_of(path)
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 0)


def validate_yaml_text(
    model: type[_M],
    text: str,
    file: str,
    extra_checks: Callable[[Any, str, dict[KeyPath, int]], list[ConfigProblem]] | None = None,
) -> _M:
    """Validate YAML text into ``model``; raise :class:`ConfigError` listing every problem,
    each with file, line and key path (the machinery of the gateway config, for other files
    such as model manifests). ``extra_checks(data, file, lines)`` adds cross-field problems."""
    return validate_yaml_document(model, text, file, extra_checks)[0]


def validate_yaml_document(
    model: type[_M],
    text: str,
    file: str,
    extra_checks: Callable[[Any, str, dict[KeyPath, int]], list[ConfigProblem]] | None = None,
    model_for: Callable[[dict[str, Any]], type[_M]] | None = None,
    context: dict[str, Any] | None = None,
) -> tuple[_M, ParsedYaml]:
    """:func:`validate_yaml_text`, also returning the data and line map it read (a later
    edit of the text can then be read again in part: gateway/config/edit.py).
    ``model_for(data)``: the model to validate this file's data with instead of ``model``
    (one that accepts what ``model`` accepts of that data, with the same errors);
    ``context``: pydantic's validation context."""
    located = parse_yaml(text, file)
    problems = list(located.problems)
    data, lines = located.data, located.lines
    result: _M | None = None
    if data is not None:
        if not isinstance(data, dict):
            problems.append(ConfigProblem(file, 1, (), "the top level must be a mapping of keys"))
        else:
            if model_for is not None:
                model = model_for(data)
            try:
                result = model.model_validate(data, context=context)
            except ValidationError as exc:  # in plain words (gateway/config/plain_errors.py)
                for path, message in plain_errors(model, data, exc.errors()):
                    problems.append(ConfigProblem(file, line_of(lines, path), path, message))
            if extra_checks is not None:
                problems.extend(extra_checks(data, file, lines))
    if problems or result is None:
        problems.sort(key=lambda p: (p.line, p.path_text))
        raise ConfigError(problems)
    return result, located

