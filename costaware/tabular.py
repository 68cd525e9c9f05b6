"""Numeric CSV parsing with errors that name the source, row and column.

Shared by training (user CSVs, SageMaker channels) and the service (``text/csv``
request bodies of several MB), so the happy path is one bulk conversion; the
cell-by-cell scan runs only to locate an error once the bulk path has failed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TabularError", "data_line_numbers", "parse_numeric_csv", "take_text_column"]


class TabularError(ValueError):
    """Bad tabular input, located by source, 1-based row (line) and 1-based column."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        row: int | None = None,
        column: int | None = None,
        column_name: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.row = row
        self.column = column
        self.column_name = column_name
        super().__init__(str(self))

    @property
    def location(self) -> str:
        """``source, row R, column C (name)`` with only the parts that are known."""
        parts = [self.source]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            col = f"column {self.column}"
            if self.column_name:
                col += f" ({self.column_name})"
            parts.append(col)
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def _show(cell: str) -> str:
    """Quote a cell for a message, truncated so a garbage body cannot flood a log."""
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")


def parse_numeric_csv(
    text: str,
    *,
    source: str,
    n_columns: int | None = None,
    header: bool = False,
) -> tuple[list[str] | None, np.ndarray]:
    """Parse comma-separated numbers into a float64 array ``[rows, columns]``.

    Blank lines are skipped (row numbers still count them, so they match the
    file as a reader sees it); ``\\r\\n`` line ends are accepted. Every cell must
    be a finite number. With ``header=True`` the first non-blank line gives the
    column names, which are returned and used in error messages. ``n_columns``
    fixes the expected width; otherwise the header (or the first data row) does.

    Raises :class:`TabularError` for empty input, ragged rows, non-numeric cells
    and NaN/inf, naming the row and column of the first problem.
    """
    numbered = _numbered_lines(text)

    names: list[str] | None = None
    if header:
        if not numbered:
            raise TabularError("empty input: no header and no data rows", source=source)
        header_line_no, header_line = numbered.pop(0)
        names = [_clean_name(cell) for cell in header_line.split(",")]
        if n_columns is not None and len(names) != n_columns:
            raise TabularError(
                f"header has {len(names)} columns, expected {n_columns}",
                source=source,
                row=header_line_no,
            )
        n_columns = len(names)
    if not numbered:
        raise TabularError("empty input: no data rows", source=source)

    if n_columns is None:
        n_columns = numbered[0][1].count(",") + 1
    expected_commas = n_columns - 1
    for line_no, line in numbered:
        found = line.count(",")
        if found != expected_commas:
            raise TabularError(
                f"expected {n_columns} columns, found {found + 1}",
                source=source,
                row=line_no,
            )

    body = ",".join(line for _, line in numbered)
    try:
        flat = np.fromiter(map(float, body.split(",")), dtype=np.float64)
    except ValueError:
        _raise_first_bad_cell(numbered, names, source)
        raise  # unreachable: the scan raises, but keep the bulk error if it did not
    values = flat.reshape(len(numbered), n_columns)

    finite = np.isfinite(values)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        line_no, line = numbered[r]
        raise TabularError(
            f"{_show(line.split(',')[c].strip())} is not a finite number",
            source=source,
            row=line_no,
            column=int(c) + 1,
            column_name=names[c] if names else None,
        )
    return names, values


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every non-blank line."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    return [(i, line) for i, line in enumerate(lines, start=1) if line and not line.isspace()]


def data_line_numbers(text: str, *, header: bool = False) -> list[int]:
    """The line number of each data row :func:`parse_numeric_csv` returns, in order.

    For callers that find a problem in the parsed array (e.g. a label that is not
    0/1) and need to name the line it came from.
    """
    numbers = [i for i, _ in _numbered_lines(text)]
    return numbers[1:] if header else numbers


def take_text_column(text: str, name: str, *, source: str) -> tuple[str, list[str]]:
    """Take the column headed ``name`` out of CSV text with a header, for a caller that
    reads that column itself (class names as labels): the text with the column's cells set
    to ``0``, so that :func:`parse_numeric_csv` still numbers rows and columns as in the
    file, and the column's cells (stripped, unquoted) in data-row order.

    Rows of the wrong width are left as they are for :func:`parse_numeric_csv` to refuse;
    empty text is returned as it is for the same reason. Raises :class:`TabularError` when
    the header names no column ``name``.
    """
    numbered = _numbered_lines(text)
    if not numbered:
        return text, []
    header_line_no, header_line = numbered[0]
    names = [_clean_name(cell) for cell in header_line.split(",")]
    if name not in names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise TabularError(
            f"no column named {name!r} (columns: {shown})", source=source, row=header_line_no
        )
    j = names.index(name)
    lines = [""] * numbered[-1][0]
    lines[header_line_no - 1] = header_line
    cells = []
    for line_no, line in numbered[1:]:
        row = line.split(",")
        if len(row) == len(names):
            cells.append(_clean_name(row[j]))
            row[j] = "0"
        lines[line_no - 1] = ",".join(row)
    return "\n".join(lines), cells


def _clean_name(cell: str) -> str:
    name = cell.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].strip()
    return name


def _raise_first_bad_cell(
    numbered: list[tuple[int, str]], names: list[str] | None, source: str
) -> None:
    for line_no, line in numbered:
        for c, cell in enumerate(line.split(",")):
            try:
                what = None if math.isfinite(float(cell)) else "is not a finite number"
            except ValueError:
                what = "is not a number"
            if what is not None:
                text = cell.strip()
                raise TabularError(
                    f"{_show(text)} {what}" if text else "empty cell",
                    source=source,
                    row=line_no,
                    column=c + 1,
                    column_name=names[c] if names else None,
                )
    raise TabularError("could not parse the numbers", source=source)
