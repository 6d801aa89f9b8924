"""YAML syntax errors in plain words: where (line, column, the line with a caret under the
spot) and what to do about it.

PyYAML (libyaml) says what its parser expected (``mapping values are not allowed in this
context``, ``while parsing a block collection did not find expected '-' indicator``); a
person writing a config needs the likely mistake. Each error is matched by its parser
message and, where one message has several usual causes, by the text around the spot
(a ``: `` inside a value, a line indented deeper than the key above it, a key without
its colon, a ``-`` without its space). An error no rule knows keeps the parser's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from gateway.errors import ConfigProblem

#: the part of a long line shown around the column
_SHOWN = 100


@dataclass(frozen=True, slots=True)
class _Spot:
    """The error's place (0-based line and column) and the file's lines."""

    lines: list[str]
    line: int
    column: int

    def text(self, line: int | None = None) -> str:
        index = self.line if line is None else line
        return self.lines[index] if 0 <= index < len(self.lines) else ""

    @property
    def char(self) -> str:
        text = self.text()
        return text[self.column] if 0 <= self.column < len(text) else ""

    def previous_content_line(self) -> int | None:
        """The last line before this one that holds more than blanks and a comment."""
        for index in range(self.line - 1, -1, -1):
            stripped = self.lines[index].strip()
            if stripped and not stripped.startswith("#"):
                return index
        return None


@dataclass(frozen=True, slots=True)
class _Words:
    message: str
    hint: str
    #: where the caret goes when it is not the parser's spot: (0-based line, column)
    at: tuple[int, int] | None = None


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _quoted(value: str) -> str:
    """``value`` as a quoted YAML scalar, in the quotes that need no doubling if any."""
    if "'" in value and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return "'" + value.replace("'", "''") + "'"


# --- the rules, one per parser message ---------------------------------------------------


def _colon_in_value(spot: _Spot, context: _Spot | None) -> _Words:
    """``mapping values are not allowed``: a ``:`` where the parser cannot start a key."""
    text = spot.text()
    before = text[: spot.column]
    first = re.match(r"^(\s*(?:-\s+)?[^\s:#'\"][^:#]*?):\s+(\S.*)$", text)
    if first and len(first.group(1)) < spot.column and ": " in before:
        key, value = first.group(1), first.group(2).rstrip()
        return _Words(
            "a ': ' inside a value: YAML reads it as a second key on this line",
            f"put the value in quotes: {key.strip()}: {_quoted(value)}")
    prev = spot.previous_content_line()
    if prev is not None:
        above = spot.text(prev)
        content = above.strip()
        missing_space = re.match(r"^((?:-\s+)?[^\s#'\"][^#:\s]*):(\S.*)$", content)
        if missing_space and ": " not in content:
            key, value = missing_space.group(1), missing_space.group(2)
            return _Words(
                f"line {prev + 1} has no space after its ':', so '{content}' is read as "
                "text, not as a key and its value",
                f"write '{key}: {value}' (a space after the colon)",
                at=(prev, above.index(":") + 1))
        if ":" not in content and not content.startswith("- ") and content != "-":
            return _Words(
                f"line {prev + 1} ('{content}') has no ':' after its key, so YAML reads "
                f"it and line {spot.line + 1} as one text",
                "write 'key: value', with a space after the colon",
                at=(prev, len(above.rstrip())))
        if _indent(text) > _indent(above) and re.search(r":\s+\S", content):
            return _Words(
                f"this line is indented deeper than the key on line {prev + 1}, which "
                "already has a value",
                f"indent it like line {prev + 1} (column {_indent(above) + 1}), or put the "
                f"value of line {prev + 1} on its own lines under the key")
    return _Words("a ':' where no key can start",
                  "a value containing ': ' goes in quotes, and the keys of one mapping "
                  "start in the same column")


def _block_mapping(spot: _Spot, context: _Spot | None) -> _Words:
    """A block mapping that found something other than its next key."""
    text = spot.text()
    if spot.char == "-":
        return _Words("a list item ('- ') where a key was expected",
                      "indent the list's items deeper than the key they belong to, or add "
                      "the missing key above them")
    before = text[: spot.column].rstrip()
    if before.endswith(("'", '"')) and re.search(r":\s+['\"]", before):
        key, _, value = text.strip().partition(":")
        return _Words("text after the closing quote of a value",
                      f"quote the whole value: {key}: {_quoted(value.strip())}")
    where = ""
    if context is not None:
        where = (f"; the keys of the mapping on line {context.line + 1} start in column "
                 f"{context.column + 1}")
    return _Words(f"this line's indentation (column {spot.column + 1}) matches no key above "
                  "it",
                  f"the keys of one mapping start in the same column{where}")


def _block_list(spot: _Spot, context: _Spot | None) -> _Words:
    """A block sequence that found something other than its next ``- ``."""
    text = spot.text()
    rest = text[spot.column:]
    if rest.startswith("-") and not rest.startswith(("- ", "-\t")) and len(rest) > 1:
        fixed = "- " + rest[1:].strip()
        return _Words(f"'{rest.strip()}' needs a space after '-' to be a list item",
                      f"write '{fixed}'")
    hint = "a new item starts with '- ' in the column of the other items"
    if context is not None:
        item = spot.text(context.line)
        match = re.match(r"^(\s*-\s+)(\S)", item)
        if match:
            hint = (f"a key of the item on line {context.line + 1} goes in column "
                    f"{len(match.group(1)) + 1}, under its first key; " + hint)
    return _Words("a key in the column of the list's '- ' items", hint)


def _unclosed_quote(spot: _Spot, context: _Spot | None) -> _Words:
    if context is None:
        return _Words("a quoted value is never closed",
                      "close it with the same quote character")
    quote = context.char or "quote"
    return _Words(f"the quote {quote} opened here is never closed",
                  f"close the value with {quote} on the same line (inside '...', a single "
                  "quote is written twice: '')",
                  at=(context.line, context.column))


def _bad_character(spot: _Spot, context: _Spot | None) -> _Words:
    char = spot.char
    if char == "\t":
        return _Words("a tab character: YAML indents with spaces only",
                      "replace the tab with spaces")
    shown = char or "this character"
    return _Words(f"'{shown}' cannot start a value in YAML (it is reserved)",
                  f"put the value in quotes: {_quoted(spot.text()[spot.column:].strip())}")


def _flow(opening: str, closing: str) -> Callable[[_Spot, _Spot | None], _Words]:
    kind = "list" if opening == "[" else "mapping"
    example = "[a, b]" if opening == "[" else "{a: 1, b: 2}"

    def rule(spot: _Spot, context: _Spot | None) -> _Words:
        at_end = spot.line >= len(spot.lines) and context is not None
        opened = "" if context is None else (
            " opened here" if at_end else f" opened on line {context.line + 1}")
        return _Words(f"the '{opening}' {kind}{opened} is not closed, or its entries lack "
                      "a ','",
                      f"write {example} on one line, or {opening} ... {closing} "
                      f"over several; an entry containing ':', ',' or '{closing}' goes in "
                      "quotes", at=(context.line, context.column) if at_end and context else None)
    return rule


def _escape(spot: _Spot, context: _Spot | None) -> _Words:
    text = spot.text()
    backslash = text.rfind("\\", 0, spot.column + 1)
    shown = text[backslash:backslash + 2] if backslash >= 0 else "\\"
    return _Words(f"'{shown}' is not an escape YAML knows inside double quotes",
                  "in \"...\" a backslash starts an escape (\\n, \\t, \\\\): write Windows "
                  "paths and regular expressions in single quotes '...', or double the "
                  "backslash", at=(spot.line, backslash) if backslash >= 0 else None)


def _alias_or_anchor(spot: _Spot, context: _Spot | None) -> _Words:
    sign = context.char if context is not None and context.char in "*&" else "*"
    what = "an alias" if sign == "*" else "an anchor"
    return _Words(f"'{sign}' starts {what} and must be followed by its name",
                  f"a value that starts with '{sign}' goes in quotes",
                  at=(context.line, context.column) if context is not None else None)


def _no_content(spot: _Spot, context: _Spot | None) -> _Words:
    return _Words("a value is missing here",
                  "an empty list entry (', ,') or a stray ']' or '}': remove it, or put "
                  "a value that starts with it in quotes")


def _question(spot: _Spot, context: _Spot | None) -> _Words:
    return _Words("'? ' cannot start a value here",
                  f"put the value in quotes: {_quoted(spot.text()[spot.column:].strip())}")


def _block_scalar(spot: _Spot, context: _Spot | None) -> _Words:
    return _Words("after '|' or '>' only a line break may follow (or a number, '+' or '-')",
                  "start the text on the next line, indented deeper than the key")


def _simple_key(spot: _Spot, context: _Spot | None) -> _Words:
    line = context.line if context is not None else spot.line
    content = spot.text(line).strip()
    return _Words(f"line {line + 1} ('{content}') has no ':' after its key",
                  "write 'key: value', with a space after the colon; a value on several "
                  "lines is indented deeper than its key",
                  at=(line, len(spot.text(line).rstrip())))


def _documents(spot: _Spot, context: _Spot | None) -> _Words:
    return _Words("a second YAML document ('---') in the file",
                  "a config is one document: remove this '---' and what follows it, or "
                  "merge the two")


#: (context pattern, problem pattern) -> rule; libyaml's and PyYAML's wordings
_RULES: list[tuple[str, str, Callable[[_Spot, _Spot | None], _Words]]] = [
    ("", r"mapping values are not allowed", _colon_in_value),
    ("", r"mapping keys are not allowed", _question),
    (r"block mapping", r"did not find expected key|expected <block end>", _block_mapping),
    (r"block collection", r"expected '-' indicator|expected <block end>", _block_list),
    (r"quoted scalar", r"end of stream", _unclosed_quote),
    (r"", r"cannot start any token|tab character that violates", _bad_character),
    (r"flow sequence", r"",  _flow("[", "]")),
    (r"flow mapping", r"", _flow("{", "}")),
    (r"", r"unknown escape", _escape),
    (r"an alias|an anchor", r"", _alias_or_anchor),
    (r"", r"node content", _no_content),
    (r"block scalar", r"", _block_scalar),
    (r"simple key", r"expected ':'", _simple_key),
    (r"single document", r"another document", _documents),
]


def _display(source: str, column: int) -> tuple[str, int]:
    """The line as shown (tabs as spaces, a long line cut around the column) and the
    1-based column in it."""
    shown = "".join(" " if c == "\t" else ("?" if c < " " or c == "\x7f" else c)
                    for c in source.rstrip("\r\n"))
    column = min(column, len(shown))
    if len(shown) > _SHOWN:
        start = max(0, min(column - _SHOWN // 2, len(shown) - _SHOWN))
        shown = ("…" if start else "") + shown[start:start + _SHOWN] + (
            "…" if start + _SHOWN < len(shown) else "")
        column = column - start + (1 if start else 0)
    return shown, column + 1


def _problem(file: str, lines: list[str], line: int, column: int, message: str,
             hint: str) -> ConfigProblem:
    source = lines[line] if 0 <= line < len(lines) else ""
    shown, col = _display(source, column)
    return ConfigProblem(file, line + 1, (), message, column=col, source=shown, hint=hint)


def syntax_problem(file: str, text: str, exc: yaml.MarkedYAMLError) -> ConfigProblem:
    """A parser error as one problem: plain words, line, column, the line and a hint."""
    lines = text.splitlines()
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        said = " ".join(p for p in (exc.context, exc.problem) if p)
        return ConfigProblem(file, 0, (), f"YAML syntax error: {said}",
                             hint="check the quotes, colons and indentation")
    spot = _Spot(lines, mark.line, mark.column)
    context = (_Spot(lines, exc.context_mark.line, exc.context_mark.column)
               if exc.context_mark is not None else None)
    for context_pattern, problem_pattern, rule in _RULES:
        if re.search(context_pattern, exc.context or "") and re.search(
                problem_pattern, exc.problem or ""):
            words = rule(spot, context)
            at = words.at
            if at is None and spot.line >= len(lines) and context is not None:
                at = (context.line, context.column)  # the end of the file: where it began
            line, column = at or (spot.line, spot.column)
            return _problem(file, lines, line, column, f"YAML syntax error: {words.message}",
                            words.hint)
    raw = " ".join(p for p in (exc.context, exc.problem) if p)
    return _problem(file, lines, spot.line, spot.column, f"YAML syntax error: {raw}",
                    "check the quotes, colons and indentation around this spot")


def character_problem(file: str, text: str, position: int, char: str | int,
                      reason: str) -> ConfigProblem:
    """A character YAML does not allow (a control character, a bad byte)."""
    line = text.count("\n", 0, position)
    column = position - (text.rfind("\n", 0, position) + 1)
    code = char if isinstance(char, int) else ord(char[:1] or " ")
    return _problem(file, text.splitlines(), line, column,
                    f"YAML error: character #x{code:04x} is not allowed ({reason})",
                    "remove it: a config holds printable text only (tabs only inside "
                    "quoted values)")
