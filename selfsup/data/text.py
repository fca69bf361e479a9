"""Text helpers every data reader shares: which characters are CJK, and UTF-8 files read line by
line (or in bounded pieces of a line, for corpora whose lines may be any length) with one-line
errors that name the file and the line.

"CJK" means three different things to the code that asks, so `is_cjk` takes the blocks to test
and each caller names the one it needs:

- `CJK_TEXT` (the default): characters of text written without spaces between words (ideographs,
  kana, CJK and full-width punctuation). Sentence splitting and joining word-level tokens ask this.
- `BERT_CHINESE`: the blocks BERT's tokenizer surrounds with spaces (its `_is_chinese_char`), so
  our tokenizers split and mask exactly as bert-base-chinese does.
- `CJK_UNIFIED`: the main ideograph block alone, the common Chinese characters, for judging how
  Chinese a text is (the QA metric's language, the fill-mask report's sentences).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from selfsup.errors import UserError

CharBlocks = tuple[tuple[int, int], ...]  # inclusive (first, last) code point ranges

CJK_TEXT: CharBlocks = (
    (0x3000, 0x9FFF),  # CJK punctuation, kana, ideographs
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0xFF00, 0xFFEF),  # full-width forms
    (0x20000, 0x3FFFF),  # extension ideographs
)
# BERT's "Chinese character" blocks (CJK Unified Ideographs and extensions, compatibility
# ideographs), the ones BertNormalizer surrounds with spaces.
BERT_CHINESE: CharBlocks = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
CJK_UNIFIED: CharBlocks = ((0x4E00, 0x9FFF),)


def is_cjk(char: str, blocks: CharBlocks = CJK_TEXT) -> bool:
    """Whether the character `char` falls in one of `blocks` (see the module docstring)."""
    code = ord(char)
    return any(first <= code <= last for first, last in blocks)


_UTF8_BOM = b"\xef\xbb\xbf"


def _decode(path: Path, raw: bytes, file_start: bool, byte_offset: int, number: int) -> str:
    """`raw` (read at `byte_offset`, on line `number`) as text, a leading BOM dropped at the file's
    start; a decode error is one line naming the file, the absolute byte offset and the line."""
    content = raw[len(_UTF8_BOM) :] if file_start and raw.startswith(_UTF8_BOM) else raw
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        bad_byte = byte_offset + len(raw) - len(content) + error.start
        raise UserError(
            f"{path}: invalid UTF-8 at byte {bad_byte} (line {number}); expected UTF-8 text"
        ) from None


def decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without line ending) of a UTF-8 file, one line in memory.

    A leading byte-order mark is dropped. Splitting bytes at b"\\n" is safe for UTF-8 (no
    multi-byte sequence contains 0x0A), and it lets a decode error be reported at its absolute byte
    offset.
    """
    byte_offset = 0
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            line = _decode(path, raw, number == 1, byte_offset, number)
            byte_offset += len(raw)
            yield number, line.rstrip("\r\n")


def _whole_characters(raw: bytes) -> int:
    """The length of the longest prefix of UTF-8 `raw` that does not end inside a character (the
    rest is at most 3 bytes of a character cut by a size limit). Invalid bytes are left to the
    decoder to report."""
    for back in range(1, min(4, len(raw)) + 1):
        byte = raw[-back]
        if byte < 0x80:  # ASCII: nothing open after it
            return len(raw)
        if byte >= 0xC0:  # the lead byte of the last character: is the character complete?
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(raw) if back >= size else len(raw) - back
    return len(raw)


def decoded_line_pieces(path: Path, max_bytes: int = 1 << 16) -> Iterator[tuple[int, str, bool]]:
    """(line number from 1, text, whether the line ends with this piece) of a UTF-8 file, read in
    pieces of at most `max_bytes` (+ 3) bytes: a line longer than that comes in several pieces,
    cut between characters, so a file without line breaks is never in memory whole. A line that
    fits comes whole, as `decoded_lines` gives it; the same BOM handling and error messages."""
    byte_offset, number, carry, line_open = 0, 1, b"", False
    with open(path, "rb") as file:
        while True:
            read = file.readline(max_bytes)
            if not read and not carry:
                if line_open:  # the file ended exactly where the last piece was cut
                    yield number, "", True
                return
            raw = carry + read
            ends = raw.endswith(b"\n") or not read
            cut = len(raw) if ends else _whole_characters(raw)
            raw, carry = raw[:cut], raw[cut:]
            text = _decode(path, raw, byte_offset == 0, byte_offset, number)
            byte_offset += len(raw)
            yield number, text.rstrip("\r\n") if ends else text, ends
            line_open = not ends
            number += ends
