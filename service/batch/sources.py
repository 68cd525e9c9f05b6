"""Input files: discovery (paths, globs, fsspec URLs), layout, partitions, and reading one
partition into a feature matrix on a worker.

CSV files are cut into byte ranges of about the partition size; a line belongs to the
range holding its first byte, so every line is read exactly once whatever the size.
Parquet files are cut at row-group boundaries. Row numbers in messages are the file's
line numbers for CSV (blank lines and the header count, as in a text editor) and 1-based
data rows for Parquet; the line number of a CSV range is only counted when a message
needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import numpy as np

from service.batch.adapter import BatchInputError, check_values, decode_numeric_csv

Kind = Literal["csv", "parquet"]
CSV_SUFFIXES = (".csv", ".csv.txt", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_HEADER_PROBE = 1 << 20


@dataclass(frozen=True)
class Layout:
    """Which of a file's columns feed the model, the label and the kept columns."""

    width: int  # columns in the file (CSV)
    names: tuple[str, ...]  # the numeric columns read: [label,] features in card order
    columns: tuple[int, ...]  # their 0-based positions in the file
    has_label: bool
    keep: tuple[str, ...] = ()
    keep_columns: tuple[int, ...] = ()
    header_line: int = 0  # the header's line number (CSV with a header), else 0

    @property
    def in_file_order(self) -> bool:
        """The file is exactly the numeric columns, in order: decode its lines as they are."""
        return self.columns == tuple(range(self.width))


@dataclass(frozen=True)
class Partition:
    index: int
    url: str
    kind: Kind
    layout: Layout
    start: int = 0  # CSV: byte range
    end: int = 0
    row_groups: tuple[int, ...] = ()  # Parquet
    first_row: int = 0
    n_rows: int | None = None  # known for Parquet
    size: int = 0  # bytes, for the progress bar


@dataclass
class Batch:
    """One partition, decoded."""

    x: np.ndarray  # float64 [N, F]
    labels: np.ndarray | None  # int8 [N]
    keep: dict[str, Any]  # name -> list of cells (CSV) or a pyarrow array (Parquet)
    where: Callable[[int], str] = field(repr=False)  # names row r: "file, row R"

    @property
    def n(self) -> int:
        return len(self.x)


# ---------------------------------------------------------------------------------------
# Discovery


def expand(inputs: Sequence[str]) -> list[str]:
    """Every file the inputs name (globs expanded, sorted), as URLs the workers can open."""
    found: list[str] = []
    for item in inputs:
        fs, _, paths = fsspec.get_fs_token_paths(item)
        paths = sorted(p for p in paths if not fs.isdir(p))
        if not paths:
            raise BatchInputError(f"{item}: no such file (or the glob matches none)")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        found.extend(p if protocol == "file" else fs.unstrip_protocol(p) for p in paths)
    return found


def kind_of(url: str, given: str | None) -> Kind:
    if given:
        return "csv" if given == "csv" else "parquet"
    lower = url.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    raise BatchInputError(
        f"{url}: cannot tell CSV from Parquet by the name; pass --input-format csv or parquet"
    )


def _layout(
    url: str,
    header: Sequence[str] | None,
    width: int,
    features: Sequence[str],
    label: str | None,
    keep: Sequence[str],
    header_line: int = 0,
) -> Layout:
    wanted = ([label] if label else []) + list(features)
    if header is None:
        if keep:
            raise BatchInputError(
                f"{url}: --keep names columns, which a file without a header has not"
            )
        return Layout(
            width=width,
            names=tuple(wanted),
            columns=tuple(range(len(wanted))),
            has_label=label is not None,
        )
    position = {}
    for c, name in enumerate(header):
        position.setdefault(name, c)
    missing = [name for name in [*wanted, *keep] if name not in position]
    if missing:
        shown = ", ".join(repr(n) for n in header[:8]) + (", ..." if len(header) > 8 else "")
        raise BatchInputError(
            f"{url}: no column {missing[0]!r}"
            + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else "")
            + f"; the file has {shown}"
        )
    return Layout(
        width=width,
        names=tuple(wanted),
        columns=tuple(position[name] for name in wanted),
        has_label=label is not None,
        keep=tuple(keep),
        keep_columns=tuple(position[name] for name in keep),
        header_line=header_line,
    )


def _csv_header(url: str, has_header: bool, n_wanted: int) -> tuple[list[str] | None, int, int]:
    """(header names, width, header line number) from the file's first non-blank line."""
    from costaware.tabular import _clean_name

    with fsspec.open(url, "rb") as f:
        head = f.read(_HEADER_PROBE)
    text = head.decode("utf-8", errors="replace").replace("\r", "")
    for line_no, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            cells = line.split(",")
            if not has_header:
                return None, n_wanted, 0
            return [_clean_name(c) for c in cells], len(cells), line_no
    raise BatchInputError(f"{url}: empty input: no header and no data rows")


def plan(
    urls: Sequence[str],
    *,
    features: Sequence[str],
    label: str | None,
    keep: Sequence[str],
    has_header: bool,
    input_format: str | None,
    partition_bytes: int,
) -> list[Partition]:
    """The partitions of every input file, in input order."""
    parts: list[Partition] = []
    for url in urls:
        kind = kind_of(url, input_format)
        if kind == "csv":
            parts.extend(
                _plan_csv(url, len(parts), features, label, keep, has_header, partition_bytes)
            )
        else:
            parts.extend(_plan_parquet(url, len(parts), features, label, keep, partition_bytes))
    return parts


def _plan_csv(
    url: str,
    first_index: int,
    features: Sequence[str],
    label: str | None,
    keep: Sequence[str],
    has_header: bool,
    partition_bytes: int,
) -> list[Partition]:
    fs, path = fsspec.core.url_to_fs(url)
    size = int(fs.size(path))
    if size == 0:
        raise BatchInputError(f"{url}: empty input: no data rows")
    n_wanted = len(features) + (1 if label else 0)
    header, width, header_line = _csv_header(url, has_header, n_wanted)
    layout = _layout(url, header, width, features, label, keep, header_line)
    starts = range(0, size, partition_bytes)
    return [
        Partition(
            index=first_index + i,
            url=url,
            kind="csv",
            layout=layout,
            start=start,
            end=min(start + partition_bytes, size),
            size=min(start + partition_bytes, size) - start,
        )
        for i, start in enumerate(starts)
    ]


def _plan_parquet(
    url: str,
    first_index: int,
    features: Sequence[str],
    label: str | None,
    keep: Sequence[str],
    partition_bytes: int,
) -> list[Partition]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fsspec.open(url, "rb") as f:
            meta = pq.ParquetFile(f).metadata
            schema = pq.ParquetFile(f).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise BatchInputError(f"{url}: not a readable Parquet file ({exc})") from None
    names = list(schema.names)
    layout = _layout(url, names, len(names), features, label, keep)
    for name, c in zip(layout.names, layout.columns, strict=True):
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise BatchInputError(f"{url}, column {c + 1} ({name}): type {kind} is not a number")
    parts: list[Partition] = []
    groups: list[int] = []
    first_row = rows = size = 0
    for g in range(meta.num_row_groups):
        groups.append(g)
        rows += meta.row_group(g).num_rows
        size += meta.row_group(g).total_byte_size
        if size >= partition_bytes or g == meta.num_row_groups - 1:
            parts.append(
                Partition(
                    index=first_index + len(parts),
                    url=url,
                    kind="parquet",
                    layout=layout,
                    row_groups=tuple(groups),
                    first_row=first_row,
                    n_rows=rows,
                    size=size,
                )
            )
            first_row += rows
            groups, rows, size = [], 0, 0
    if not parts or meta.num_rows == 0:
        raise BatchInputError(f"{url}: empty input: no data rows")
    return parts


# ---------------------------------------------------------------------------------------
# Reading one partition (on a worker)


def read(part: Partition) -> Batch:
    return _read_csv(part) if part.kind == "csv" else _read_parquet(part)


def _read_range(url: str, start: int, end: int) -> tuple[bytes, int]:
    """The whole lines whose first byte lies in [start, end), and the offset of the first."""
    with fsspec.open(url, "rb") as f:
        offset = start
        if start > 0:
            f.seek(start - 1)
            previous = f.read(1)
            data = f.read(end - start)
            if previous != b"\n":
                cut = data.find(b"\n")
                if cut < 0:
                    return b"", end  # inside a line that an earlier range reads
                data, offset = data[cut + 1 :], start + cut + 1
        else:
            data = f.read(end)
        if data and not data.endswith(b"\n"):
            rest = []
            while True:
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                cut = chunk.find(b"\n")
                if cut >= 0:
                    rest.append(chunk[: cut + 1])
                    break
                rest.append(chunk)
            data += b"".join(rest)
    return data, offset


def _line_of(url: str, offset: int) -> int:
    """The 1-based line number of the byte at ``offset`` (counted only for a message)."""
    count = 0
    with fsspec.open(url, "rb") as f:
        left = offset
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count + 1


def _read_csv(part: Partition) -> Batch:
    layout = part.layout
    data, offset = _read_range(part.url, part.start, part.end)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_of(part.url, offset + exc.start)
        raise BatchInputError(f"{part.url}, row {line}: not UTF-8 text") from None
    if offset == 0 and layout.header_line:
        # Keep the header's line (empty) so that line numbers stay the file's.
        lines = text.split("\n", layout.header_line)
        text = "\n" * layout.header_line + (
            lines[layout.header_line] if len(lines) > layout.header_line else ""
        )
    if not text.strip():
        return Batch(
            x=np.empty((0, len(layout.names) - layout.has_label)),
            labels=None if not layout.has_label else np.empty(0, dtype=np.int8),
            keep={name: [] for name in layout.keep},
            where=lambda r: f"{part.url}, row ?",
        )
    first_line: int | None = 1 if offset == 0 else None

    def line_one() -> int:
        nonlocal first_line
        if first_line is None:
            first_line = _line_of(part.url, offset)
        return first_line

    def attempt(decode: Callable[[int], Any]) -> Any:
        # The range's first line number is only counted when a message needs it.
        try:
            return decode(1)
        except BatchInputError:
            if offset == 0:
                raise
            return decode(line_one())

    keep: dict[str, list[str]] = {name: [] for name in layout.keep}
    if layout.in_file_order and not layout.keep:
        numeric_text = text
    else:
        numeric_text = attempt(lambda first: _select_columns(text, layout, part.url, first, keep))
    matrix = attempt(
        lambda first: decode_numeric_csv(
            numeric_text, layout.names, [c + 1 for c in layout.columns], part.url, first
        )
    )

    def where(r: int) -> str:
        from costaware.tabular import data_line_numbers

        return f"{part.url}, row {data_line_numbers(text)[r] + line_one() - 1}"

    labels = None
    if layout.has_label:
        labels = _labels(matrix[:, 0], layout, where)
        matrix = matrix[:, 1:]
    return Batch(x=matrix, labels=labels, keep=keep, where=where)


def _select_columns(
    text: str, layout: Layout, url: str, first_line: int, keep: dict[str, list[str]]
) -> str:
    """The numeric columns' text, line for line (blank lines kept so numbers stay right);
    the kept columns' cells are appended to ``keep``."""
    for values in keep.values():
        values.clear()
    out = []
    columns, keep_columns = layout.columns, layout.keep_columns
    for i, line in enumerate(text.split("\n")):
        if not line or line.isspace():
            out.append("")
            continue
        cells = line.rstrip("\r").split(",")
        if len(cells) != layout.width:
            raise BatchInputError(
                f"{url}, row {first_line + i}: expected {layout.width} columns, found {len(cells)}"
            )
        out.append(",".join([cells[c] for c in columns]))
        for name, c in zip(layout.keep, keep_columns, strict=True):
            keep[name].append(cells[c].strip())
    return "\n".join(out)


def _labels(values: np.ndarray, layout: Layout, where: Callable[[int], str]) -> np.ndarray:
    bad = (values != 0) & (values != 1)
    if bad.any():
        r = int(np.argmax(bad))
        raise BatchInputError(
            f"{where(r)}, column {layout.columns[0] + 1} ({layout.names[0]}): "
            f"{values[r]:g} is not 0 or 1"
        )
    return values.astype(np.int8)


def _read_parquet(part: Partition) -> Batch:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    layout = part.layout
    with fsspec.open(part.url, "rb") as f:
        table = pq.ParquetFile(f).read_row_groups(
            list(part.row_groups), columns=list(dict.fromkeys([*layout.names, *layout.keep]))
        )

    def where(r: int) -> str:
        return f"{part.url}, row {part.first_row + r + 1}"

    columns = []
    for name, c in zip(layout.names, layout.columns, strict=True):
        array = table.column(name)
        if array.null_count:
            r = int(np.argmax(pc.is_null(array).to_numpy(zero_copy_only=False)))
            raise BatchInputError(f"{where(r)}, column {c + 1} ({name}): missing value (null)")
        columns.append(pc.cast(array, pa.float64()).to_numpy())
    matrix = np.column_stack(columns) if columns else np.empty((table.num_rows, 0))
    check_values(matrix, layout.names, [c + 1 for c in layout.columns], where)
    labels = None
    if layout.has_label:
        labels = _labels(matrix[:, 0], layout, where)
        matrix = matrix[:, 1:]
    keep = {name: table.column(name) for name in layout.keep}
    return Batch(x=matrix, labels=labels, keep=keep, where=where)
