"""A device's tag list as a spreadsheet (CSV or XLSX) and back, as Kepware and Neuron users
keep them: one row per tag, one column per key of the tag in the YAML file (``name``
first), a header row naming the columns.

Reading checks every row against the device's tag model (the same validation as the config
file) and refuses the file with every bad row's number and column (``tags.csv:7: address:
...``), so that nothing changes; cells are text (CSV) or the spreadsheet's numbers and
booleans (XLSX), an empty cell is a key left out, a list or mapping (``range``) is JSON
text. Writing puts lists and mappings as JSON text, so a file written reads back the same.
XLSX through openpyxl (imported when first used): the one maintained pure-Python reader
and writer of the format.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import zipfile
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.config.plain_errors import plain_errors
from gateway.errors import ConfigError, ConfigProblem

#: rows a tag list may have (a device of 10,000 tags is large)
MAX_ROWS = 50_000
MAX_COLUMNS = 64
#: bytes the parts of an XLSX file may unpack to, in all (a zip bomb is refused unread)
MAX_XLSX_UNPACKED = 256 * 1024 * 1024
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Row = tuple[int, dict[str, Any]]


def columns_of(tags: list[dict[str, Any]]) -> list[str]:
    """``name``, then every other key in the order it first appears."""
    columns = ["name"]
    for tag in tags:
        columns += [key for key in tag if key not in columns]
    return columns


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_csv(tags: list[dict[str, Any]]) -> bytes:
    """The tag list as CSV, UTF-8 with a byte order mark (spreadsheets read it so)."""
    columns = columns_of(tags)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for tag in tags:
        writer.writerow(["" if tag.get(c) is None else _cell(tag.get(c)) for c in columns])
    return out.getvalue().encode("utf-8-sig")


def write_xlsx(tags: list[dict[str, Any]], sheet: str) -> bytes:
    """The tag list as one XLSX sheet named ``sheet``."""
    from openpyxl import Workbook

    columns = columns_of(tags)
    book = Workbook(write_only=True)
    ws = book.create_sheet(title=sheet[:31] or "tags")
    ws.append(columns)
    for tag in tags:
        ws.append([_cell(tag.get(c)) if not isinstance(tag.get(c), bool) else tag.get(c)
                   for c in columns])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def read_csv(data: bytes, file: str) -> list[Row]:
    """(row number, {column: cell}) of each non-empty row below the header."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(file, 0, (), f"not UTF-8 text: {exc}")]) from None
    try:
        rows = list(_limited(csv.reader(io.StringIO(text, newline="")), file))
    except csv.Error as exc:
        raise ConfigError([ConfigProblem(file, 0, (), f"not CSV: {exc}")]) from None
    return _rows(rows, file)


def read_xlsx(data: bytes, file: str, max_unpacked: int = MAX_XLSX_UNPACKED) -> list[Row]:
    """(row number, {column: cell}) of each non-empty row of the first sheet below its
    header; a file whose parts unpack to more than ``max_unpacked`` bytes is refused
    before any is read."""
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(i.file_size for i in archive.infolist()) > max_unpacked:
                raise ConfigError([ConfigProblem(file, 0, (), "the file unpacks to more than "
                                                 f"{max_unpacked:,} bytes")])
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except ConfigError:
        raise
    except Exception as exc:  # zipfile, XML and openpyxl's own errors: not an XLSX file
        raise ConfigError([ConfigProblem(file, 0, (), f"not an XLSX file: "
                                         f"{str(exc)[:200]}")]) from None
    try:
        sheet = book.worksheets[0]
        rows = list(_limited(sheet.iter_rows(values_only=True), file))
    except Exception as exc:
        raise ConfigError([ConfigProblem(file, 0, (), f"unreadable sheet: "
                                         f"{str(exc)[:200]}")]) from None
    finally:
        book.close()
    return _rows(rows, file)


def _limited(rows: Iterable[Any], file: str) -> Iterable[list[Any]]:
    for number, row in enumerate(rows, 1):
        if number > MAX_ROWS + 1:
            raise ConfigError([ConfigProblem(file, number, (), f"more than {MAX_ROWS} rows")])
        yield list(row)[:MAX_COLUMNS + 1]


def _rows(rows: list[list[Any]], file: str) -> list[Row]:
    if not rows:
        raise ConfigError([ConfigProblem(file, 1, (), "the file is empty: a header row "
                                                      "naming the columns comes first")])
    header = [str(c).strip() if c is not None else "" for c in rows[0]]
    while header and not header[-1]:
        header.pop()
    problems = []
    if "name" not in header:
        problems.append(ConfigProblem(file, 1, (), "the header has no 'name' column"))
    if len(header) > MAX_COLUMNS:
        problems.append(ConfigProblem(file, 1, (), f"more than {MAX_COLUMNS} columns"))
    seen: set[str] = set()
    for column in header:
        if not column:
            problems.append(ConfigProblem(file, 1, (), "a column without a name"))
        elif column in seen:
            problems.append(ConfigProblem(file, 1, (column,), "this column is there twice"))
        seen.add(column)
    out: list[Row] = []
    for number, row in enumerate(rows[1:], 2):
        cells = {c: v for c, v in zip(header, row, strict=False) if c and _given(v)}
        extra = [v for v in row[len(header):] if _given(v)]
        if extra:
            problems.append(ConfigProblem(file, number, (), "a cell beyond the named columns"))
        if cells:
            out.append((number, cells))
    if problems:
        raise ConfigError(problems)
    if not out:
        raise ConfigError([ConfigProblem(file, 2, (), "no tag rows below the header")])
    return out


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def tags_of(rows: list[Row], device: dict[str, Any], model: type[BaseModel],
            file: str) -> list[dict[str, Any]]:
    """The rows as tags of ``device`` (its config as in the YAML file; validated with
    ``model``, the device's config model); :class:`ConfigError` with a problem per bad row
    and column (line: the row number) when any is bad."""
    problems: list[ConfigProblem] = []
    tags: list[dict[str, Any]] = []
    for number, cells in rows:
        tag: dict[str, Any] = {}
        for column, value in cells.items():
            if isinstance(value, str):
                value = value.strip()
                if value[:1] in "[{":
                    try:
                        value = json.loads(value)
                    except (ValueError, RecursionError) as exc:
                        problems.append(ConfigProblem(file, number, (column,),
                                                      f"not JSON: {str(exc)[:120]}"))
                        continue
            elif isinstance(value, float) and value.is_integer():
                value = int(value)  # a spreadsheet's 40001.0
            elif not isinstance(value, int | float | bool):
                value = str(value)  # a date: as text
            tag[column] = value
        tags.append(tag)
    if problems:
        raise ConfigError(problems)
    try:
        validated = model.model_validate({**device, "tags": tags})
    except ValidationError as exc:
        for path, message in plain_errors(model, {**device, "tags": tags}, exc.errors()):
            if len(path) >= 2 and path[0] == "tags" and isinstance(path[1], int):
                number = rows[path[1]][0]
                problems.append(ConfigProblem(file, number, path[2:3], message))
            else:
                problems.append(ConfigProblem(file, 0, path, message))
        problems.sort(key=lambda p: (p.line, p.path_text))
        raise ConfigError(problems) from None
    return [_typed(tag, t) for tag, t in zip(tags, getattr(validated, "tags", []),
                                             strict=True)]


def _typed(tag: dict[str, Any], validated: Any) -> dict[str, Any]:
    """Cells of numbers and booleans as the YAML file would write them (``5``, not
    ``'5'``), where the tag model reads them so; any other text stays as written."""
    out = {}
    for key, value in tag.items():
        read = getattr(validated, key, None)
        if isinstance(value, str) and not isinstance(read, enum.Enum | str):
            if isinstance(read, bool) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            elif isinstance(read, int | float) and not isinstance(read, bool):
                value = _number(value, value)
        out[key] = value
    return out


def _number(text: str, default: Any) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return default
