"""The user's tables (CSV or Parquet) read once, and their rows named in error messages."""
from pathlib import Path

import numpy as np
import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet")


def read_table(path, columns=None):
    """A CSV or Parquet file as a DataFrame (strings kept as strings); `columns`: those that must be there
    (ValueError naming the file and the missing columns)."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: a table must be .csv or .parquet")
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype=str)
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs the pyarrow package (pip install -r requirements.txt), "
                         f"or give the table as CSV") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} cannot be read as a table: {err}") from None
    missing = [c for c in columns or () if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; it has "
                         f"{', '.join(map(repr, table.columns))}")
    return table


def format_rows(rows, most=10):
    """'3, 17, 42' or '3, 17, … (25 rows)': row numbers for an error message (0-based, header not counted)."""
    rows = [int(r) for r in rows]
    shown = ", ".join(map(str, rows[:most]))
    return shown if len(rows) <= most else f"{shown}, … ({len(rows)} rows)"


def duplicated_rows(ids):
    """Rows (int64, ascending) whose id occurs more than once in `ids`."""
    return np.flatnonzero(pd.Series(ids).duplicated(keep=False).to_numpy())
