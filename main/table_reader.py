"""The user's tables (CSV or Parquet) and label sets read once, exactly as written, and their rows named in errors;
`write_table` writes a table atomically.

A CSV's cells are text: only an empty cell is missing ("NA", "None" and "null" are values); a byte-order mark is
dropped; text that is not UTF-8 raises ValueError naming the file, the column and the rows. A Parquet file keeps
its column types, integers with missing values included (nullable dtypes, never floats).
"""
import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .paths import atomic_write

TABLE_SUFFIXES = (".csv", ".parquet")


def write_table(frame, path):
    """`frame` as CSV or Parquet (by the suffix of `path`), written atomically."""
    if Path(path).suffix.lower() == ".parquet":
        atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        atomic_write(path, lambda handle: handle.write(frame.to_csv(index=False).encode()))


def read_table(path, columns=None):
    """A CSV or Parquet file as a DataFrame (CSV: every column text); `columns`: those that must be there (ValueError
    naming the file and the missing columns)."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: a table must be .csv or .parquet")
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path, dtype_backend="numpy_nullable")
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs the pyarrow package (pip install -r requirements.txt), "
                         f"or give the table as CSV") from None
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} cannot be read as a table: {' '.join(str(err).split())}") from None
    missing = [c for c in columns or () if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; it has "
                         f"{', '.join(map(repr, table.columns))}")
    return table


def _not_utf8(path):
    """The message for a CSV that is not UTF-8 text, naming its column and rows."""
    text = Path(path).read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    lines = list(csv.reader(io.StringIO(text)))
    header = lines[0] if lines else []
    cells = [(row, column, cell) for row, line in enumerate(lines[1:]) for column, cell in enumerate(line)
             if _undecodable(cell)]
    fix = "save the file as UTF-8 text (e.g. a spreadsheet's 'CSV UTF-8')"
    bad_names = [name for name in header if _undecodable(name)]
    if bad_names or not cells:
        return f"{path}: the header is not UTF-8 text (e.g. {_shown(bad_names[0] if bad_names else text[:40])}); {fix}"
    column = cells[0][1]
    rows = [row for row, col, _ in cells if col == column]
    name = header[column] if column < len(header) else f"#{column + 1}"
    return f"{path}: column '{name}', rows {format_rows(rows)}: not UTF-8 text (e.g. {_shown(cells[0][2])}); {fix}"


def _undecodable(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(text):
    return repr(text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


def read_label_set(path, flag="--label_set"):
    """The names in a text file (a label set, a class list): one per line, in class-id order, stripped, blank lines
    skipped, a byte-order mark and CRLF line ends allowed; ValueError naming `flag`, the file and the lines for text
    that is not UTF-8, a repeated name or no name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} does not exist")
    lines = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff").splitlines()
    bad = [number for number, line in enumerate(lines, 1) if _undecodable(line)]
    if bad:
        raise ValueError(f"{flag} {path}: lines {format_rows(bad)} are not UTF-8 text (e.g. "
                         f"{_shown(lines[bad[0] - 1])}); save the file as UTF-8")
    names = [line.strip() for line in lines if line.strip()]
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated or not names:
        problem = f"repeats {', '.join(map(repr, repeated[:5]))}" if repeated else "holds no name"
        raise ValueError(f"{flag} {path} {problem}; it needs one name per line, each once")
    return names


def format_rows(rows, most=10):
    """'3, 17, 42' or '3, 17, … (25 rows)': row numbers for an error message (0-based, header not counted)."""
    rows = [int(r) for r in rows]
    shown = ", ".join(map(str, rows[:most]))
    return shown if len(rows) <= most else f"{shown}, … ({len(rows)} rows)"


def duplicated_rows(ids):
    """Rows (int64, ascending) whose id occurs more than once in `ids`."""
    return np.flatnonzero(pd.Series(ids).duplicated(keep=False).to_numpy())
