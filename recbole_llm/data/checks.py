"""The dataset's atomic files (``.inter``, ``.item``, ``.user``), read once before RecBole loads them.

RecBole reads an atomic file with pandas and checks little: a header column without a type, a
duplicated column, a byte that is not UTF-8 or a word in a float column ends in a traceback; a
row with more fields than the header shifts every column of the file by one; a header line
repeated as a data row becomes a user and an item; a header-only file or one whose id columns are
named otherwise fails deep in its filtering. ``check_atomic_file`` reports each of these as one
``DatasetFormatError`` naming the file, the line and the fix, before anything is loaded.

``check_split`` refuses a split that leaves nothing to validate or test (one interaction per user),
which RecBole would train on and then fail to evaluate.
"""

import csv
import functools
import os

import numpy as np
import pandas as pd

from recbole_llm.errors import DatasetFormatError

# RecBole's field types (recbole.utils.FeatureType), as the atomic files' headers spell them.
FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
# What RecBole's pandas reader accepts in one field (its python engine reads through the csv module).
FIELD_LIMIT = csv.field_size_limit()
_HEADER_EXAMPLE = "user_id:token item_id:token rating:float timestamp:float"


def _loaded_columns(config, suffix, names):
    """The columns of ``names`` RecBole loads from the file ``suffix`` (``load_col`` / ``unload_col``);
    None when it does not read the file at all."""
    load_col, unload_col = config["load_col"], config["unload_col"] or {}
    if load_col is not None and suffix not in load_col:
        return None
    wanted = None if load_col is None or load_col[suffix] == "*" else set(load_col[suffix])
    return [n for n in names if (wanted is None or n in wanted) and n not in unload_col.get(suffix, ())]


def check_atomic_file(path, config, suffix):
    """Raise a ``DatasetFormatError`` for the first problem of the atomic file ``path`` (``suffix``:
    inter, item or user) that RecBole would fail on or read wrongly."""
    stat = os.stat(path)
    load_col = {k: v if isinstance(v, str) else tuple(v) for k, v in (config["load_col"] or {}).items()}
    unload_col = {k: tuple(v) for k, v in (config["unload_col"] or {}).items()}
    _check_file(str(path), stat.st_size, stat.st_mtime_ns, suffix, config["field_separator"],
                config["encoding"] or "utf-8", config["seq_separator"], tuple(sorted(load_col.items())) if
                config["load_col"] is not None else None, tuple(sorted(unload_col.items())),
                config["USER_ID_FIELD"], config["ITEM_ID_FIELD"])


@functools.lru_cache(maxsize=64)
def _check_file(path, size, mtime, suffix, separator, encoding, seq_separator, load_col, unload_col, uid, iid):
    # Cached by the file's size and time: every Config of a run (and of a test session) checks the same files.
    config = {"load_col": None if load_col is None else dict(load_col), "unload_col": dict(unload_col)}
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            raw_header = f.readline()
    except OSError as error:
        raise DatasetFormatError(f"{path} cannot be read ({error.strerror or error}). "
                                 "Fix: make the file readable by this user.") from None
    if not raw_header.strip():
        raise DatasetFormatError(f"{path} is empty or starts with an empty line; RecBole reads the column names from "
                                 f"its first line. Fix: write the header first, e.g. {separator.join(_HEADER_EXAMPLE.split())}.")
    header_line = _decode(raw_header, path, encoding, 1)
    if header_line.startswith("\ufeff"):
        raise DatasetFormatError(
            f"{path} starts with a byte-order mark (as some editors save UTF-8), which RecBole reads into the first "
            f"column's name. Fix: save the file as UTF-8 without BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {name}).")
    if header_line.endswith("\r\n"):
        raise DatasetFormatError(
            f"{path} has Windows line ends (\\r\\n), which RecBole reads into its last column's type. "
            f"Fix: convert the file to Unix line ends, e.g. dos2unix {name}.")
    header = header_line.rstrip("\n").split(separator)
    _check_header(path, header, separator)
    names = [column.partition(":")[0] for column in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetFormatError(
            f"The header of {path} names the column {', '.join(repeated)} more than once. "
            f"Fix: give each column its own name in the first line.")
    loaded = _loaded_columns(config, suffix, names)
    ids = {"inter": [("USER_ID_FIELD", uid), ("ITEM_ID_FIELD", iid)], "item": [("ITEM_ID_FIELD", iid)],
           "user": [("USER_ID_FIELD", uid)]}.get(suffix, [])
    for key, field in ids:
        if field is not None and loaded is not None and field not in loaded:
            where = "has no column" if field not in names else "is read without the column"
            raise DatasetFormatError(
                f"{path} {where} {field!r}, which {key} names as its id column (its columns: "
                f"{', '.join(names)}). Fix: name that column {field}:token in the first line, or pass "
                f"--{key}=<your column> and list it in --load_col, e.g. --load_col=\"{{{suffix}: [{', '.join(names)}]}}\".")
    wanted = None if loaded is None or config["load_col"] is None else config["load_col"][suffix]
    missing = [] if wanted in (None, "*") else [c for c in wanted if c not in names]
    if missing:
        raise DatasetFormatError(
            f"load_col lists {', '.join(missing)} for {name}, which has only the columns {', '.join(names)}. "
            f"Fix: list columns of its first line in --load_col, or rename them there.")
    floats = [(i, names[i], header[i].partition(":")[2]) for i in range(len(header))
              if names[i] in (loaded or ()) and header[i].partition(":")[2] in ("float", "float_seq")]
    checked = [i for i in range(len(header)) if names[i] in (loaded or ())]
    rows = _check_rows(path, raw_header, header, encoding, separator, seq_separator, floats, checked)
    if rows == 0 and suffix == "inter":
        raise DatasetFormatError(f"{path} has a header but no interactions. Fix: add one line per interaction.")


def _decode(raw, path, encoding, line):
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise DatasetFormatError(
            f"Line {line} of {path} is not {encoding} text (byte {raw[error.start:error.start + 1]!r} at "
            f"position {error.start + 1}). Fix: save the file as {encoding} (e.g. iconv -f latin1 -t utf-8), or "
            f"pass --encoding=<its encoding>.") from None


def _check_header(path, header, separator):
    """Every column of an atomic file's header must read ``name:type``; RecBole raises a bare ValueError."""
    bad = [column for column in header if column.partition(":")[2] not in FIELD_TYPES]
    if not bad:
        return
    shown = {"\t": "tabs", " ": "spaces", ",": "commas"}.get(separator, repr(separator))
    for other, called in ((" ", "spaces"), (",", "commas"), (";", "semicolons"), ("\t", "tabs")):
        parts = header[0].split(other)
        if len(header) == 1 and other != separator and len(parts) > 1 and all(
                p.partition(":")[2] in FIELD_TYPES for p in parts if p):
            raise DatasetFormatError(
                f"The header of {path} reads as one column: RecBole splits lines at {shown} (field_separator), "
                f"and this file separates its columns with {called}. Fix: separate the columns with tabs in every "
                f"line, or set field_separator to {other!r} in a property file (--config_files); a text column "
                f"such as a title then cannot hold {called}.")
    raise DatasetFormatError(
        f"The header of {path} has {len(bad)} column(s) without a RecBole type: {', '.join(map(repr, bad[:5]))}. "
        f"Each column is written name:type with type one of {', '.join(FIELD_TYPES)}, separated by {shown}. "
        f"Fix: rename them in the first line, e.g. {separator.join(_HEADER_EXAMPLE.split())}.")


def _check_rows(path, raw_header, header, encoding, separator, seq_separator, floats, checked):
    """Return how many data rows the file has, or raise for the first bad one.

    The whole file is checked at once first (a few C-level passes); the row-by-row scan that names
    the line runs only where that finds a problem.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = None
    if text is not None:
        lines = [line for line in text.replace("\r\n", "\n").split("\n")[1:] if line]
        header_line = raw_header.rstrip(b"\r\n").decode(encoding)
        clean = header_line not in lines and max((line.count(separator) for line in lines), default=0) < len(header)
        if clean and checked and max(map(len, lines), default=0) > FIELD_LIMIT:
            clean = False
        if clean and floats:
            clean = _floats_parse(path, header, separator, encoding, seq_separator, floats)
        if clean:
            return len(lines)
    return _scan_rows(path, raw_header, header, encoding, separator, seq_separator, floats, checked)


def _floats_parse(path, header, separator, encoding, seq_separator, floats):
    """Whether every value of the float columns parses, read by pandas' C parser (a tenth of a second for 100k rows)."""
    columns = [header[i] for i, _, kind in floats]
    try:
        frame = pd.read_csv(path, sep=separator, usecols=columns, encoding=encoding, quoting=csv.QUOTE_NONE,
                            dtype={header[i]: np.float64 if kind == "float" else str for i, _, kind in floats})
        for i, _, kind in floats:
            if kind == "float_seq":
                list(map(float, (v for value in frame[header[i]].dropna() for v in value.split(seq_separator) if v)))
    except ValueError:  # pandas' ParserError is one
        return False
    return True


def _scan_rows(path, raw_header, header, encoding, separator, seq_separator, floats, checked):
    """Scan the data rows one by one, raising for the first bad one; return how many there are."""
    rows = 0
    header_line = raw_header.rstrip(b"\r\n")
    width = len(header)
    with open(path, "rb") as f:
        f.readline()
        for number, raw in enumerate(f, start=2):
            raw = raw.rstrip(b"\r\n")
            if not raw:
                continue
            rows += 1
            line = _decode(raw, path, encoding, number)
            if raw == header_line:
                raise DatasetFormatError(
                    f"Line {number} of {path} repeats the header; RecBole would read it as a user and an item "
                    f"named like the columns. Fix: delete that line (files joined with their headers?).")
            cells = line.split(separator)
            if len(cells) > width:
                raise DatasetFormatError(
                    f"Line {number} of {path} has {len(cells)} fields, the header {width}; RecBole would shift "
                    f"its columns. Fix: remove the extra fields, or add their columns to the header (a text with "
                    f"a {'tab' if separator == chr(9) else repr(separator)} in it?).")
            for i in checked:
                if i < len(cells) and len(cells[i]) > FIELD_LIMIT:
                    raise DatasetFormatError(
                        f"Line {number} of {path} holds {len(cells[i])} characters in column {header[i]}, more "
                        f"than the {FIELD_LIMIT} RecBole's reader takes in one field. Fix: shorten it, or leave "
                        f"that column out with --unload_col.")
            for i, column, kind in floats:
                if i >= len(cells) or not cells[i].strip():
                    continue
                values = cells[i].split(seq_separator) if kind == "float_seq" else [cells[i]]
                try:
                    [float(value) for value in values if value]
                except ValueError:
                    raise DatasetFormatError(
                        f"Line {number} of {path} holds {cells[i][:40]!r} in the {kind} column {column}. Fix: "
                        f"write a number there (or leave it empty), or declare the column :token.") from None
    return rows


def check_split(config, train, valid, test):
    """Refuse a split that leaves no interaction to validate or to test on."""
    empty = [name for name, part in (("validation", valid), ("test", test)) if part is not None and len(part) == 0]
    if empty:
        raise DatasetFormatError(
            f"The split {config['eval_args']['split']} (eval_args) of dataset '{config['dataset']}' leaves no "
            f"interaction for {' or '.join(empty)} ({len(train)} for training): users with too few interactions "
            f"each keep them all for training. Fix: use a dataset with several interactions per user, or split "
            f"across users with --eval_args=\"{{group_by: none}}\".")
