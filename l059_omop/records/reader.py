"""Stream extract files in chunks of text cells: CSV in the spec's encoding, .xlsx sheets via openpyxl.

Every cell is read as text ('' when empty) so the mapper, not a CSV sniffer, decides what a value is and
quarantines what it cannot read. Bytes that are not valid in the declared encoding become U+FFFD and the
row is quarantined (naming the encoding), instead of stopping the load half way.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from l059_omop.errors import BadInput
from l059_omop.records.spec import MappingSpec, SourceSpec

EXTENSIONS = {".csv", ".tsv", ".txt", ".xlsx", ".xlsm"}
BAD_BYTES = "\ufffd"


@dataclass(frozen=True)
class Input:
    """One readable unit: a CSV file, or one sheet of a workbook, and the source spec it feeds."""

    path: Path
    source: SourceSpec
    sheet: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path}" + (f"[{self.sheet}]" if self.sheet else "")


def expand(paths: list[Path]) -> list[tuple[Path, bool]]:
    """Files named on the command line (explicit=True) and the extract files inside folders, sorted."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += [(f, False) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in EXTENSIONS
                    and not f.name.startswith(("~$", "."))]
        elif p.is_file():
            out.append((p, True))
        else:
            raise BadInput(f"{p}: no such file or folder")
    return out


def _is_excel(path: Path) -> bool:
    return path.suffix.lower() in (".xlsx", ".xlsm")


def plan(spec: MappingSpec, paths: list[Path]) -> tuple[list[Input], list[Path]]:
    """Match input files (and sheets) to the spec's sources; (inputs, ignored files in folders)."""
    inputs: list[Input] = []
    ignored: list[Path] = []
    for path, explicit in expand(paths):
        found: list[Input] = []
        if _is_excel(path):
            sheets = sheet_names(path)
            for s in spec.sources.values():
                if s.sheet and s.sheet in sheets and (s.file is None or s.matches(path)):
                    found.append(Input(path, s, s.sheet))
                elif s.sheet is None and s.matches(path):
                    found.append(Input(path, s, sheets[0]))
        else:
            found = [Input(path, s) for s in spec.sources.values() if s.sheet is None and s.matches(path)]
        if not found:
            if explicit:
                pats = ", ".join(f"{s.name}: {s.file or ''}{'[' + s.sheet + ']' if s.sheet else ''}"
                                 for s in spec.sources.values())
                raise BadInput(f"{path}: matches no source of {spec.path} ({pats})")
            ignored.append(path)
        inputs += found
    if not inputs:
        raise BadInput(f"no input file matches a source of {spec.path}")
    # patients first, so rows of other files find their person in the same run
    inputs.sort(key=lambda i: (0 if any(o.table == "person" for o in i.source.outputs.values()) else 1,))
    return inputs, ignored


def sheet_names(path: Path) -> list[str]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/xml errors of a damaged file
        raise BadInput(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        return list(wb.sheetnames)
    finally:
        wb.close()


def _clean_header(cols: list) -> list[str]:
    return [("" if c is None else str(c)).lstrip("\ufeff").strip() for c in cols]


def header(inp: Input) -> list[str]:
    if inp.sheet is not None:
        import openpyxl

        wb = openpyxl.load_workbook(inp.path, read_only=True, data_only=True)
        try:
            for row in wb[inp.sheet].iter_rows(values_only=True):
                return _clean_header(list(row))
            return []
        finally:
            wb.close()
    try:
        with inp.path.open(encoding=inp.source.encoding, errors="replace", newline="") as fh:
            first = next(csv.reader(fh, delimiter=inp.source.delimiter), [])
    except OSError as exc:
        raise BadInput(f"{inp.path}: cannot read ({exc})") from None
    return _clean_header(first)


_CLEAN: dict[tuple[str, str, int, int], bool] = {}


def is_clean(inp: Input) -> bool:
    """True when a CSV file decodes in its declared encoding without an error and has no NUL byte (and no
    U+FFFD of its own): none of its rows can need quarantining for its bytes. Read once per file (C speed);
    workbooks are checked row by row."""
    if inp.sheet is not None:
        return False
    st = inp.path.stat()
    key = (str(inp.path), inp.source.encoding, st.st_size, st.st_mtime_ns)
    if key not in _CLEAN:
        if len(_CLEAN) > 1000:
            _CLEAN.clear()
        _CLEAN[key] = _decodes_cleanly(inp.path, inp.source.encoding)
    return _CLEAN[key]


def _decodes_cleanly(path: Path, encoding: str) -> bool:
    dec = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 22):
                if b"\x00" in block or BAD_BYTES in dec.decode(block):
                    return False
            dec.decode(b"", final=True)
    except (UnicodeDecodeError, OSError):
        return False
    return True


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S") if (v.hour or v.minute or v.second) else v.strftime("%Y-%m-%d")
    if isinstance(v, dt.date):
        return v.strftime("%Y-%m-%d")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def chunks(inp: Input, size: int) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """(chunk of text cells, spreadsheet row number of each row: the header is row 1)."""
    cols = header(inp)
    if inp.sheet is not None:
        yield from _excel_chunks(inp, cols, size)
        return
    reader = pd.read_csv(inp.path, sep=inp.source.delimiter, dtype=str, keep_default_na=False, na_filter=False,
                         encoding=inp.source.encoding, encoding_errors="replace", chunksize=size, header=0,
                         names=cols, skip_blank_lines=True, engine="c", quoting=csv.QUOTE_MINIMAL)
    start = 2
    try:
        for chunk in reader:
            rows = pd.Series(range(start, start + len(chunk)))
            start += len(chunk)
            yield chunk, rows
    except (pd.errors.ParserError, ValueError) as exc:
        raise BadInput(f"{inp.path}: not a readable CSV near row {start} ({str(exc).splitlines()[0]})") from None


def _excel_chunks(inp: Input, cols: list[str], size: int) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    import openpyxl

    wb = openpyxl.load_workbook(inp.path, read_only=True, data_only=True)
    try:
        ws = wb[inp.sheet]
        buf: list[list[str]] = []
        nums: list[int] = []
        width = len(cols)
        for i, row in enumerate(ws.iter_rows(min_row=2, values_only=True), start=2):
            cells = [_cell(v) for v in row[:width]]
            if not any(c.strip() for c in cells):
                continue
            cells += [""] * (width - len(cells))
            buf.append(cells)
            nums.append(i)
            if len(buf) >= size:
                yield pd.DataFrame(buf, columns=cols, dtype=object), pd.Series(nums)
                buf, nums = [], []
        if buf:
            yield pd.DataFrame(buf, columns=cols, dtype=object), pd.Series(nums)
    finally:
        wb.close()


# Encodings in which the bytes of '\n', '\r' and '"' only ever stand for those characters (never inside a
# multi-byte character): a file in one of them can be cut at its line ends without decoding it.
_SPLITTABLE = {"utf-8", "utf-8-sig", "ascii", "latin-1", "iso8859-1", "cp1252", "gb18030", "gbk", "gb2312",
               "big5", "cp950", "shift_jis", "cp932", "euc_jp", "euc_kr"}
_WHITESPACE_LINE = re.compile(rb"\n[ \t\r\f\v]*\n")
_WHITESPACE_FIRST = re.compile(rb"[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class ByteChunk:
    """A chunk of a CSV file as a byte range of whole lines, parsed on its own (in a worker process) with
    the file's header line: the rows :func:`chunks` would give, starting at spreadsheet row ``first_row``."""

    offset: int
    length: int
    first_row: int
    rows: int
    header: bytes


def byte_chunks(inp: Input, size: int) -> list[ByteChunk] | None:
    """The chunks of ``size`` rows that :func:`chunks` reads, as byte ranges, when every line of the file is
    one row: a CSV (not a workbook) in an encoding of ``_SPLITTABLE``, without a quote character (a quoted
    cell may hold a line end), blank or whitespace-only lines (pandas skips them), lone carriage returns
    (pandas ends a line there) or NUL bytes. None otherwise: the file is then read by :func:`chunks`.
    One pass over the file's bytes at C speed (no decoding)."""
    if inp.sheet is not None:
        return None
    try:
        enc = codecs.lookup(inp.source.encoding).name
    except LookupError:
        return None
    if enc not in _SPLITTABLE:
        return None
    import numpy as np

    out: list[ByteChunk] = []
    header = b""
    start = None  # offset of the current chunk's first row
    rows_in = 0   # rows in the current chunk so far
    row = 2
    pos = 0       # offset of ``piece`` in the file
    carry = b""
    try:
        with inp.path.open("rb") as fh:
            while True:
                block = fh.read(1 << 22)
                piece = carry + block
                if not block:
                    if not header:
                        return None
                    if carry:  # a last line without a line end
                        if not carry.strip():
                            return None
                        if start is None:
                            start, rows_in = pos, 0
                        rows_in += 1
                    break
                cut = piece.rfind(b"\n") + 1
                piece, carry = piece[:cut], piece[cut:]
                if not piece:
                    continue
                if b'"' in piece or b"\x00" in piece or piece.count(b"\r") != piece.count(b"\r\n"):
                    return None
                base = 0
                if not header:
                    end = piece.index(b"\n") + 1
                    header, base = piece[:end], end
                if _WHITESPACE_FIRST.match(piece, base) or _WHITESPACE_LINE.search(piece, base):
                    return None  # a piece starts at a line start and ends with a line end
                ends = np.flatnonzero(np.frombuffer(piece, dtype=np.uint8) == 10)
                if base:
                    ends = ends[1:]
                i = 0
                while i < len(ends):
                    if start is None:
                        start, rows_in = pos + (int(ends[i - 1]) + 1 if i else base), 0
                    take = min(size - rows_in, len(ends) - i)
                    i += take
                    rows_in += take
                    if rows_in == size:
                        stop = pos + int(ends[i - 1]) + 1
                        out.append(ByteChunk(start, stop - start, row, size, header))
                        row += size
                        start = None
                pos += len(piece)
    except OSError as exc:
        raise BadInput(f"{inp.path}: cannot read ({exc})") from None
    if start is not None and rows_in:
        out.append(ByteChunk(start, inp.path.stat().st_size - start, row, rows_in, header))
    return out or None  # no rows: chunks() gives one empty chunk


def read_byte_chunk(inp: Input, bc: ByteChunk) -> tuple[pd.DataFrame, pd.Series]:
    """One :class:`ByteChunk` of ``inp`` as :func:`chunks` gives it (cells as text, spreadsheet row numbers)."""
    import io

    with inp.path.open("rb") as fh:
        fh.seek(bc.offset)
        data = fh.read(bc.length)
    try:
        chunk = pd.read_csv(io.BytesIO(bc.header + data), sep=inp.source.delimiter, dtype=str, keep_default_na=False,
                            na_filter=False, encoding=inp.source.encoding, encoding_errors="replace", header=0,
                            names=header(inp), skip_blank_lines=True, engine="c", quoting=csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, ValueError) as exc:
        # pandas counts lines from the header: here the chunk's, in the file the file's
        msg = re.sub(r"line (\d+)", lambda m: f"line {int(m.group(1)) + bc.first_row - 2}", str(exc).splitlines()[0])
        raise BadInput(f"{inp.path}: not a readable CSV near row {bc.first_row} ({msg})") from None
    return chunk, pd.Series(range(bc.first_row, bc.first_row + len(chunk)))
