"""Turn whatever landed into clean UTF-8 text on disk, or refuse it with a clear reason.

Handles: empty files, binary content (by magic number or control bytes), gzip, byte-order
marks (UTF-8/16/32), non-UTF-8 text (decoded with the declared fallback encoding), and
line ends the CSV readers cannot read (a lone CR; CRLF and LF mixed, see ``lf_line_ends``).
Everything streams in fixed-size chunks, so memory does not depend on file size.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import re
import shutil
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import deadline
from .errors import OutOfScratchSpace, UnprocessableFile

CHUNK = 1 << 20
HEAD = 64 * 1024
HEAD_LINES = 20  # enough for the dialect, the header and a title block above it
MAX_HEAD = 16 * HEAD

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a ZIP archive (or XLSX/DOCX)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"Obj\x01", "an Avro file"),
    (b"\x7fELF", "an executable"),
    (b"\xfd7zXZ", "an xz archive"),
    (b"(\xb5/\xfd", "a zstd archive"),
    # "BZh", the block size, then the first block's magic (pi in BCD)
    *((b"BZh%d1AY&SY" % size, "a bzip2 archive") for size in range(1, 10)),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"ARROW1\x00\x00", "an Arrow IPC (Feather) file"),
    # met only once a gzip file is decompressed (a gzip file is decompressed first)
    (b"\x1f\x8b", "a gzip stream inside the gzip file (compressed twice): compress the text once"),
    (b"\xd0\xcf\x11\xe0", "an OLE document (XLS/DOC)"),
)
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Bytes that never occur in text: C0 controls other than tab, LF, FF, CR and ESC.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


@dataclass
class TextFile:
    path: Path
    encoding: str
    head: str
    compressed: bool = False
    warnings: list[str] = field(default_factory=list)


def prepare(path: Path, workdir: Path, fallback_encoding: str) -> TextFile:
    """Return ``path`` as UTF-8 text without BOM (a new file in ``workdir`` when it had to
    be decompressed or transcoded)."""
    original = path
    size = path.stat().st_size
    if size == 0:
        raise UnprocessableFile("the file is empty (0 bytes)")
    raw_head = _read_head(path)
    compressed = raw_head.startswith(b"\x1f\x8b")
    if compressed:
        path = _gunzip(path, workdir / "decompressed")
        raw_head = _read_head(path)
        if not raw_head:
            raise UnprocessableFile("the gzip file decompresses to nothing (0 bytes)")
    warnings: list[str] = []
    if raw_head.startswith(b"\x00") and _unicode_encoding(raw_head)[0] is None:  # not UTF-16/32
        text, raw_head = _without_leading_nuls(path, raw_head, workdir / "text.txt", warnings)
        path = _replaced(path, text, original)
    _check_content(raw_head)

    source_codec, encoding = _unicode_encoding(raw_head)
    if source_codec is not None:
        text_path = _replaced(path, _transcode(path, workdir / "utf8.txt", source_codec), original)
        text_path = _replaced(text_path, _lone_cr_to_lf(text_path, workdir, warnings), original)
    else:
        # bytes, before decoding: a CR is the same byte in every ASCII-compatible encoding,
        # and the encoding warning's line number then counts the file's lines
        path = _replaced(path, _lone_cr_to_lf(path, workdir, warnings), original)
        bad_offset = _first_invalid_utf8(path)
        if bad_offset is None:
            encoding, text_path = "utf-8", path
        else:
            try:
                codecs.lookup(fallback_encoding)
            except LookupError as exc:
                raise UnprocessableFile(f"unknown fallback encoding {fallback_encoding!r}") from exc
            line = _line_of_offset(path, bad_offset)
            characters, invalid = _utf8_evidence(path)
            if characters >= invalid:
                # UTF-8 text with a few stray bytes (a line pasted from a Latin-1 source):
                # decoding it all as the fallback would garble every other accent (José as
                # JosÃ©), so only the stray bytes are. A tie goes to UTF-8 too: a valid
                # multi-byte sequence is rarely an accident of a one-byte encoding (cp1252's
                # "Ã©"), and the stray bytes are read as the fallback either way.
                encoding = "utf-8"
                warnings.append(
                    f"{invalid:,} byte(s) not valid UTF-8 (the first at offset {bad_offset}, line {line}) "
                    f"decoded as {fallback_encoding}; the rest of the file is UTF-8"
                )
                text_path = _transcode(path, workdir / "utf8.txt", "utf-8", _bytes_as(fallback_encoding))
                _replaced(path, text_path, original)
            else:
                encoding = fallback_encoding
                warnings.append(
                    f"not valid UTF-8 (first invalid byte at offset {bad_offset}, line {line}); "
                    f"decoded as {fallback_encoding}"
                )
                text_path = _transcode(path, workdir / "utf8.txt", fallback_encoding)
                _replaced(path, text_path, original)
    head = _read_head(text_path).decode("utf-8", errors="ignore")
    if not head.strip():
        raise UnprocessableFile("the file contains only whitespace")
    return TextFile(path=text_path, encoding=encoding, head=head, compressed=compressed, warnings=warnings)


def _replaced(old: Path, new: Path, original: Path) -> Path:
    """``new``, having removed ``old`` when it is a copy of ``original`` that ``new``
    replaces: each copy takes the file's size of the scratch space again (a gzip file in a
    legacy encoding with Mac line ends was held three times over)."""
    if new != old and old != original:
        old.unlink()
    return new


def _read_head(path: Path) -> bytes:
    """The file's first ``HEAD`` bytes, or more when they do not hold ``HEAD_LINES`` whole
    lines (the header of a thousand long column names is longer), up to ``MAX_HEAD``."""
    with path.open("rb") as f:
        head = f.read(HEAD)
        while head.count(b"\n") < HEAD_LINES and len(head) < MAX_HEAD and (more := f.read(HEAD)):
            head += more
    return head


def _gunzip(path: Path, target: Path) -> Path:
    written = 0
    try:
        with gzip.open(path, "rb") as src, target.open("wb") as dst:
            first = True
            while chunk := src.read(CHUNK):
                deadline.check()
                if first:  # binary content is refused now, not after gigabytes of it
                    # (what follows the NULs a rotated log may start with: _without_leading_nuls)
                    text = chunk if _unicode_encoding(chunk)[0] else chunk.lstrip(b"\x00")
                    if text:
                        _check_after_nuls(text, chunk)
                        first = False
                written += len(chunk)
                dst.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            # the disk is full, not the stream corrupt; the sizes tell a file too large for
            # the space from a compression bomb (a few MB that decompress to gigabytes)
            raise OutOfScratchSpace(
                f"the gzip file ({path.stat().st_size:,} bytes) decompressed to more than the scratch "
                f"space holds ({shutil.disk_usage(target.parent).total / 2**20:,.0f} MB): "
                f"it had given {written:,} bytes when the space filled up"
            ) from exc
        raise UnprocessableFile(f"the gzip stream is corrupt: {exc}") from exc
    return target


# Python codecs that consume the BOM (and, for UTF-16/32, read the byte order from it).
_BOM_CODECS = {
    "utf-8": "utf-8-sig",
    "utf-16-le": "utf-16",
    "utf-16-be": "utf-16",
    "utf-32-le": "utf-32",
    "utf-32-be": "utf-32",
}


def _unicode_encoding(head: bytes) -> tuple[str | None, str]:
    """(codec to transcode with, encoding name to report) for text with a BOM or for BOM-less
    UTF-16; (None, "") for anything else."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return _BOM_CODECS[name], f"{name} (BOM)"
    bomless = _bomless_utf16(head)
    return (bomless, bomless) if bomless else (None, "")


def _bomless_utf16(head: bytes) -> str | None:
    """UTF-16 without BOM: ASCII text then has a NUL in every other byte."""
    sample = head[:4096]
    if len(sample) < 4 or b"\x00" not in sample:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _check_content(head: bytes) -> None:
    """Refuse ``head`` if it starts a known binary format, or is binary (not UTF-16/32)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise UnprocessableFile(f"unsupported content: this is {what}, not CSV, JSON, NDJSON or log text")
    if _unicode_encoding(head)[0] is None:
        _reject_binary(head)


def _reject_binary(head: bytes) -> None:
    sample = head[:8192]
    if b"\x00" in sample:
        raise UnprocessableFile(
            f"binary content: NUL byte at offset {sample.index(0)}; expected CSV, JSON, NDJSON or log text"
        )
    controls = sum(sample.count(bytes([c])) for c in _CONTROL)
    if sample and controls > 0.05 * len(sample):
        raise UnprocessableFile(
            f"binary content: {controls} control bytes in the first {len(sample)} bytes; "
            "expected CSV, JSON, NDJSON or log text"
        )


def _first_invalid_utf8(path: Path) -> int | None:
    """Byte offset of the first byte that is not valid UTF-8, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes fed to the decoder so far
    with path.open("rb") as f:
        while True:
            deadline.check()
            chunk = f.read(CHUNK)
            pending = len(decoder.getstate()[0])  # bytes held back from the previous chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return offset - pending + exc.start
            if not chunk:
                return None
            offset += len(chunk)


_SURROGATES = re.compile("[\udc80-\udcff]")  # the bytes surrogateescape could not decode
_BEYOND_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")


def _utf8_evidence(path: Path) -> tuple[int, int]:
    """(characters beyond ASCII that decode as UTF-8, bytes that do not) in ``path``."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    characters = invalid = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            deadline.check()
            text = decoder.decode(chunk)
            characters += len(_BEYOND_ASCII.findall(text))
            invalid += len(_SURROGATES.findall(text))
    invalid += len(_SURROGATES.findall(decoder.decode(b"", final=True)))
    return characters, invalid


def _bytes_as(encoding: str) -> str:
    """A codecs error handler (its name) decoding each byte UTF-8 refuses as ``encoding``."""
    name = f"headrace-bytes-as-{encoding}"

    def decode(exc: UnicodeError) -> tuple[str, int]:
        assert isinstance(exc, UnicodeDecodeError)
        return exc.object[exc.start : exc.end].decode(encoding, errors="replace"), exc.end

    codecs.register_error(name, decode)
    return name


def _line_of_offset(path: Path, offset: int) -> int:
    newlines, read = 0, 0
    with path.open("rb") as f:
        while read < offset:
            chunk = f.read(min(CHUNK, offset - read))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            read += len(chunk)
    return newlines + 1


def first_line_longer_than(path: Path, limit: int) -> int | None:
    """The number of the first line of ``path`` longer than ``limit`` bytes, or None. One
    pass in chunks of at most ``limit`` bytes: a longer line then spans a chunk's end, so
    only the line ends around each chunk's ends are looked for (at the speed of reading),
    and a line is given up on as soon as it is too long (memory stays one chunk)."""
    size = min(CHUNK, limit)
    run = 0  # bytes of the line that ends the chunks read so far
    start = 0  # where that line starts
    read = 0
    with path.open("rb") as f:
        while chunk := f.read(size):
            deadline.check()
            first = chunk.find(b"\n")
            if run + (len(chunk) if first < 0 else first) > limit:
                return _line_of_offset(path, start)
            if first >= 0:
                last = chunk.rfind(b"\n")
                start = read + last + 1
                run = len(chunk) - last - 1
            else:
                run += len(chunk)
            read += len(chunk)
    return None


_LONE_CR = re.compile(rb"\r(?!\n)")
_CRLF = re.compile(rb"\r\n")


def _without_leading_nuls(path: Path, head: bytes, target: Path, warnings: list[str]) -> tuple[Path, bytes]:
    """(``path``, ``head``) without the NUL bytes the file starts with, when text follows
    them: a log truncated in place (logrotate's copytruncate) while its writer kept its
    offset starts so, with as many NULs as it held. Binary after them is refused before
    anything is copied; NULs alone are left to the caller's check."""
    skipped = 0
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            deadline.check()
            rest = chunk.lstrip(b"\x00")
            skipped += len(chunk) - len(rest)
            if rest:
                _check_after_nuls(rest, head)
                with target.open("wb") as dst:
                    dst.write(rest)
                    shutil.copyfileobj(src, dst, CHUNK)
                break
        else:
            return path, head
    warnings.append(
        f"the file starts with {skipped:,} NUL bytes (a log truncated in place by copytruncate "
        "rotation while its writer went on at its old offset): skipped"
    )
    return target, _read_head(target)


def _check_after_nuls(text: bytes, original: bytes) -> None:
    """Refuse ``text``, what follows leading NULs, if it is no text, by the offsets of
    ``original`` (the bytes as they came, NULs included)."""
    try:
        _check_content(text)
    except UnprocessableFile:
        _check_content(original)
        raise


def _lone_cr_to_lf(path: Path, workdir: Path, warnings: list[str]) -> Path:
    """``path``, or a copy whose lone CRs are LFs when it has any: lines that end with a
    lone CR (classic Mac OS; Excel for Mac's "CSV (Macintosh)"), or a stray one, on which
    the CSV readers fail. Byte for byte, so offsets and line numbers stay the file's; a
    lone CR inside a quoted value becomes LF too."""
    if not _has_lone_cr(path):
        return path
    warnings.append("lines end with a lone CR (classic Mac OS line ends); each read as LF")
    return _replace_line_ends(path, workdir / "lf.txt", _LONE_CR)


def lf_line_ends(text: TextFile, workdir: Path) -> TextFile:
    """``text`` with its CRLF line ends made LF too, for DuckDB's CSV reader, which fails
    when CRLF and LF line ends are mixed (files joined from different systems). A CRLF
    inside a quoted value becomes LF too."""
    path = _replace_line_ends(text.path, workdir / "lf-only.txt", _CRLF)
    warning = "CRLF and LF line ends are mixed; all read as LF"
    # the head too: the dialect is sniffed from it again (a record's line end among it)
    head = text.head.replace("\r\n", "\n")
    return replace(text, path=path, head=head, warnings=[*text.warnings, warning])


def _replace_line_ends(path: Path, target: Path, line_end: re.Pattern[bytes]) -> Path:
    """A copy of ``path`` with each match of ``line_end`` (a CR, or a CR and its LF)
    replaced by one LF."""
    with path.open("rb") as src, target.open("wb") as dst:
        held = b""  # a CR that ends a chunk: the next chunk may start with its LF
        while chunk := src.read(CHUNK):
            deadline.check()
            chunk = held + chunk
            held = b"\r" if chunk.endswith(b"\r") else b""
            dst.write(line_end.sub(b"\n", chunk[: len(chunk) - len(held)]))
        dst.write(line_end.sub(b"\n", held))
    return target


def _has_lone_cr(path: Path) -> bool:
    """Whether a CR of the file is not followed by an LF. A memchr search rules out nearly
    every file (no CR at all); a regular expression then checks the CRLF ones (twice as
    fast as counting)."""
    with path.open("rb") as f:
        held = b""  # a CR that ends a chunk: the next chunk may start with its LF
        while chunk := f.read(CHUNK):
            deadline.check()
            chunk = held + chunk
            held = b"\r" if chunk.endswith(b"\r") else b""
            if b"\r" in chunk and _LONE_CR.search(chunk, 0, len(chunk) - len(held)):
                return True
    return held == b"\r"


def _transcode(path: Path, target: Path, source_encoding: str, errors: str = "replace") -> Path:
    decoder = codecs.getincrementaldecoder(source_encoding)(errors=errors)
    with path.open("rb") as src, target.open("w", encoding="utf-8", newline="") as dst:
        while chunk := src.read(CHUNK):
            deadline.check()
            dst.write(decoder.decode(chunk))
        dst.write(decoder.decode(b"", final=True))
    return target
