"""Tokenizers: one `Tokenizer` class over a Hugging Face `tokenizers.Tokenizer`, three kinds.

Every vocabulary we train puts [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0..4.

- "char", the default for Chinese and the lecture's "one Chinese character = one token" (which is
  also what bert-base-chinese does: BERT's basic tokenizer puts spaces around every CJK
  character). Punctuation marks are one token each, whitespace is dropped, and runs of other
  letters/digits are split WordPiece-style into characters ("hello" -> h ##e ##l ##l ##o). The
  vocabulary comes from character counts; no merges are learned.
- "wordpiece", BERT's recipe (Devlin et al. 2019, Wu et al. 2016): BERT normalizer and
  pre-tokenizer (CJK characters split one by one) and a vocabulary learned by `tokenizers`'
  WordPieceTrainer. `Tokenizer.from_vocab_file` builds the same kind from a released BERT vocab.txt
  and tokenizes exactly as transformers' BertTokenizerFast does (ids and offsets).
- "bpe", GPT-2's byte-level BPE (Radford et al. 2019), learned by BpeTrainer. It never produces
  [UNK], and decoding gives back the exact input text.

We wrap `tokenizers` because it is fast (Rust, batches in parallel) and returns offsets into the
original text, which span tasks (QA, NER) and whole-word masking need.

Choices and deviations:
- `encode` never adds [CLS]/[SEP]. Objectives and task heads build their own layouts. A literal
  special token in the text ("中华人民共[MASK]国") becomes that token's id, so fill-mask prompts work.
- Offsets are character (not byte) offsets into the original string, end exclusive. A byte-level
  BPE piece that covers only part of a character gets the offsets of every whole character it
  touches. This is common for Chinese, where one character is 3 UTF-8 bytes, often split over 2
  pieces. So neighbouring pieces may overlap, but starts and ends never decrease. Offsets leave
  out the space that BPE attaches to the front of a word ("Ġworld" -> "world") unless the piece is
  only whitespace.
- `continues_word` marks a piece that whole-word masking should mask together with the previous
  one. For the WordPiece kinds these are the "##x" pieces. For BPE they are pieces from the same
  pre-token that are not preceded by whitespace and do not start a CJK character, plus any piece
  that starts inside a character.
- As in BERT, a word that contains a character missing from a WordPiece vocabulary becomes one
  [UNK] covering the whole word. So does any word longer than 100 characters.
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Encoding as _HFEncoding
from tokenizers import Tokenizer as _HFTokenizer

from selfsup.data.text import BERT_CHINESE, is_cjk
from selfsup.data.token_arrays import BertArrayEncoder, TokenArrays, arrays_from_encodings
from selfsup.errors import UserError
from selfsup.io import atomic_write_json, atomic_write_text

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4 in vocabularies we train
KINDS = ("char", "wordpiece", "bpe")
MAX_WORD_CHARS = 100  # BERT's max_input_chars_per_word: a longer word becomes one [UNK]

TOKENIZER_FILE = "tokenizer.json"  # the Hugging Face serialisation, loadable without selfsup
META_FILE = "selfsup_tokenizer.json"  # what tokenizer.json cannot say: kind, lowercase
VOCAB_FILE = "vocab.txt"  # BERT's format, for the WordPiece kinds
HF_CONFIG_FILE = "tokenizer_config.json"  # transformers' file, read for do_lower_case
FORMAT_VERSION = 1

_NO_SPACE_BEFORE = frozenset(",.!?;:%)]}")
_NO_SPACE_AFTER = frozenset("([{")


@dataclass
class Encoding:
    ids: list[int]
    offsets: list[tuple[int, int]]  # character offsets into the original text, end exclusive
    continues_word: list[bool]  # True: belongs to the previous token's word (mask them together)


def _is_punctuation(char: str) -> bool:
    """BertPreTokenizer's test: ASCII punctuation (including $ + < = > ^ ` | ~) or Unicode P*."""
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def _is_wide(char: str) -> bool:
    """Characters written without spaces around them: CJK, full-width forms, and punctuation of
    ambiguous width such as “ ” … — (Chinese text uses them without spaces)."""
    width = unicodedata.east_asian_width(char)
    return width in ("W", "F") or (width == "A" and unicodedata.category(char).startswith("P"))


def _byte_of_char() -> dict[str, int]:
    """The inverse of GPT-2's bytes_to_unicode: which byte each byte-level BPE character stands
    for. Printable Latin-1 bytes stand for themselves; the others map to chr(256 + n)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    char_of_byte = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in char_of_byte:
            char_of_byte[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in char_of_byte.items()}


_BYTE_OF_CHAR = _byte_of_char()


def _starts_inside_character(token: str) -> bool:
    """A byte-level piece whose first byte is a UTF-8 continuation byte (0b10xxxxxx)."""
    byte = _BYTE_OF_CHAR.get(token[:1])
    return byte is not None and 0x80 <= byte < 0xC0


def _trim_leading_space(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop the space BPE attaches to a word's first piece, unless nothing else is left."""
    trimmed = start
    while trimmed < end and text[trimmed].isspace():
        trimmed += 1
    return (trimmed, end) if trimmed < end else (start, end)


def _bpe_continues_word(
    text: str,
    tokens: list[str],
    offsets: list[tuple[int, int]],
    word_ids: list[int | None],
    special: list[bool],
) -> list[bool]:
    flags = []
    for i, token in enumerate(tokens):
        start, _ = offsets[i]
        if i == 0 or special[i] or special[i - 1] or word_ids[i] != word_ids[i - 1]:
            flags.append(False)  # a new pre-token (GPT-2's regex splits at spaces, punctuation)
        elif _starts_inside_character(token):
            flags.append(True)  # the rest of a character the previous piece began
        elif start >= len(text) or text[start].isspace() or is_cjk(text[start], BERT_CHINESE):
            flags.append(False)  # "Ġword" starts a word; every CJK character is its own word
        else:
            previous_start, previous_end = offsets[i - 1]
            flags.append(not text[previous_start:previous_end].isspace())
    return flags


def _space_between(left: str, right: str) -> bool:
    if _is_wide(left) or _is_wide(right):
        return False
    return right not in _NO_SPACE_BEFORE and left not in _NO_SPACE_AFTER


def _join_wordpieces(tokens: list[str]) -> str:
    """Readable text from WordPiece tokens: "##" pieces glued to the previous token, a space
    between words except next to CJK or full-width characters and inside brackets or before
    , . ! ? ; : % (what the input most likely had)."""
    parts: list[str] = []
    for token in tokens:
        if token.startswith("##") and len(token) > 2:
            parts.append(token[2:])
        elif token:
            if parts and _space_between(parts[-1][-1], token[0]):
                parts.append(" ")
            parts.append(token)
    return "".join(parts)


def _special_added_tokens() -> list[AddedToken]:
    # normalized=False: matched on the raw text, so "[MASK]" survives lowercasing (as in
    # transformers, which registers BERT's special tokens the same way).
    return [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]


def _bert_backend(
    vocab: dict[str, int] | None, lowercase: bool, strip_accents: bool | None
) -> _HFTokenizer:
    """BERT's pipeline: clean up and space out CJK characters, split on whitespace and
    punctuation, then greedy longest-match WordPiece. strip_accents=None follows lowercase."""
    backend = _HFTokenizer(
        models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=MAX_WORD_CHARS)
    )
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=strip_accents,
        lowercase=lowercase,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _char_vocab(
    texts: Iterable[str], normalizer: Any, vocab_size: int, min_frequency: int
) -> dict[str, int]:
    """Special tokens, then the most frequent characters, each followed (in frequency order) by
    its "##" form unless it is CJK or punctuation: those always stand alone as words."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(normalizer.normalize_str(text))
    entries = []
    for char, count in counts.items():
        if count < min_frequency or char.isspace():
            continue
        entries.append((count, char))
        if not (is_cjk(char, BERT_CHINESE) or _is_punctuation(char)):
            entries.append((count, "##" + char))
    entries.sort(key=lambda entry: (-entry[0], entry[1].startswith("##"), entry[1]))
    budget = vocab_size - len(SPECIAL_TOKENS)
    tokens = SPECIAL_TOKENS + [t for _, t in entries if t not in SPECIAL_TOKENS][:budget]
    return {token: i for i, token in enumerate(tokens)}


def _train_char(
    texts: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool
) -> _HFTokenizer:
    # Full-width forms ("１９９８年") stay as written: no NFKC, no accent stripping.
    counter = _bert_backend(None, lowercase, strip_accents=False)
    vocab = _char_vocab(texts, counter.normalizer, vocab_size, min_frequency)
    return _bert_backend(vocab, lowercase, strip_accents=False)


def _train_wordpiece(
    texts: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool
) -> _HFTokenizer:
    # strip_accents=None: BERT's convention, accents go with lowercasing (as in uncased BERT).
    backend = _bert_backend(None, lowercase, strip_accents=None)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return backend


def _train_bpe(
    texts: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool
) -> _HFTokenizer:
    backend = _HFTokenizer(models.BPE(unk_token="[UNK]"))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # No ByteLevel post-processor: we trim offsets ourselves (see _trim_leading_space).
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: never [UNK]
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return backend


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read JSON ({error})") from error
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _read_vocab_file(path: Path) -> dict[str, int]:
    """BERT's vocab.txt: token i on line i. Split on "\\n" only: str.splitlines() also splits
    on U+2028 and others, and bert-base-chinese's line 344 is U+2028, so ids would shift."""
    if not path.is_file():
        raise UserError(f"{path}: vocabulary file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 ({error})") from error
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty token
    if not lines:
        raise UserError(f"{path}: empty vocabulary file")
    # A repeated token keeps its last line, as in BERT's load_vocab.
    return {line.removesuffix("\r"): i for i, line in enumerate(lines)}


def _read_backend(path: Path) -> _HFTokenizer:
    try:
        return _HFTokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises plain Exception on a bad file
        raise UserError(f"{path}: not a Hugging Face tokenizer.json ({error})") from error


def _infer_kind(backend: _HFTokenizer, path: Path) -> str:
    if isinstance(backend.model, models.WordPiece):
        return "wordpiece"
    if isinstance(backend.model, models.BPE):
        return "bpe"
    name = type(backend.model).__name__
    raise UserError(f"{path}: model type {name} is not supported (expected WordPiece or BPE)")


def _lowercases(normalizer: dict[str, Any] | None) -> bool:
    """Whether a serialised normalizer lowercases (read from tokenizer.json)."""
    if not normalizer:
        return False
    if normalizer.get("type") == "Sequence":
        return any(_lowercases(n) for n in normalizer.get("normalizers", []))
    if normalizer.get("type") == "BertNormalizer":
        return bool(normalizer.get("lowercase"))
    return normalizer.get("type") == "Lowercase"


class Tokenizer:
    """Text -> ids with offsets and word boundaries, and back. Build one with
    `train_tokenizer`, `Tokenizer.load` or `Tokenizer.from_vocab_file`."""

    def __init__(
        self, backend: _HFTokenizer, kind: str, lowercase: bool, source: str = "tokenizer"
    ) -> None:
        if kind not in KINDS:
            raise UserError(f"{source}: unknown tokenizer kind {kind!r}; expected one of {KINDS}")
        ids = [backend.token_to_id(token) for token in SPECIAL_TOKENS]
        missing = [token for token, i in zip(SPECIAL_TOKENS, ids, strict=True) if i is None]
        if missing:
            raise UserError(
                f"{source}: special token(s) {', '.join(missing)} not in the vocabulary"
            )
        # A loaded tokenizer.json may pad/truncate (all-MiniLM's pads to 128) or lack the
        # special tokens as added tokens; encode() must do neither and must match "[MASK]".
        backend.no_truncation()
        backend.no_padding()
        backend.add_special_tokens(_special_added_tokens())
        self._backend = backend
        self.kind = kind
        self.lowercase = lowercase
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
        self.special_ids = frozenset(ids)
        # Max id + 1, not len(vocab): a vocab.txt with a repeated token leaves an unused id.
        self.vocab_size = max(backend.get_vocab(with_added_tokens=True).values()) + 1
        # built on first encode_arrays; False where the kind or pipeline has no array path
        self._array_encoder: BertArrayEncoder | bool | None = None
        self._continues_table: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"

    def _convert(self, text: str, encoding: _HFEncoding) -> Encoding:
        ids = list(encoding.ids)
        tokens = list(encoding.tokens)
        offsets = [(start, end) for start, end in encoding.offsets]
        special = [i in self.special_ids for i in ids]
        if self.kind != "bpe":
            continues = [t.startswith("##") and not s for t, s in zip(tokens, special, strict=True)]
            return Encoding(ids, offsets, continues)
        continues = _bpe_continues_word(text, tokens, offsets, list(encoding.word_ids), special)
        offsets = [_trim_leading_space(text, start, end) for start, end in offsets]
        return Encoding(ids, offsets, continues)

    def encode(self, text: str) -> Encoding:
        """Ids, offsets and word-continuation flags of one text; no [CLS]/[SEP] added."""
        return self._convert(text, self._backend.encode(text, add_special_tokens=False))

    def encode_batch(self, texts: list[str]) -> list[Encoding]:
        """Same as [encode(t) for t in texts], with the texts tokenized in parallel (Rust)."""
        texts = list(texts)
        encodings = self._backend.encode_batch(texts, add_special_tokens=False)
        return [self._convert(text, e) for text, e in zip(texts, encodings, strict=True)]

    def continues_table(self) -> np.ndarray:
        """(vocab_size,) bool: `continues_word` of each id for the WordPiece kinds (a "##"
        piece that is not a special token), so flags are an array lookup, not a string test."""
        if self._continues_table is None:
            table = np.zeros(self.vocab_size, dtype=bool)
            for token, i in self._backend.get_vocab(with_added_tokens=True).items():
                table[i] = token.startswith("##") and i not in self.special_ids
            self._continues_table = table
        return self._continues_table

    def _encode_batch_arrays(self, texts: list[str], with_starts: bool) -> TokenArrays:
        """`encode_batch` as arrays, converted without a Python object per token where the
        flags depend on the id alone (the WordPiece kinds)."""
        encodings = self._backend.encode_batch(texts, add_special_tokens=False)
        if self.kind == "bpe":  # flags and offsets depend on the text around each piece
            converted = [self._convert(t, e) for t, e in zip(texts, encodings, strict=True)]
            return arrays_from_encodings(converted, with_starts)
        lengths = np.fromiter(map(len, encodings), np.int64, len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64, total)
        starts = None
        if with_starts:
            starts = np.fromiter((s for e in encodings for s, _ in e.offsets), np.int64, total)
        return TokenArrays(ids, lengths, self.continues_table()[ids], starts)

    def encode_arrays(self, texts: list[str], with_starts: bool = False) -> TokenArrays:
        """What `encode_batch(texts)` gives, as flat arrays: ids and `continues_word` of all
        texts back to back, tokens per text, and (with_starts) each token's start offset.

        For the char and WordPiece kinds the ids come from `BertArrayEncoder` (numpy over the
        batch's characters, the tokenizer asked once per distinct character and word): corpus
        preparation runs at 7-9M characters/s on Chinese text where `encode_batch` alone runs at
        0.8-1.1M. Byte-level BPE goes through `encode_batch`."""
        texts = list(texts)
        if self._array_encoder is None:
            if self.kind == "bpe" or not BertArrayEncoder.supports(self._backend):
                self._array_encoder = False
            else:
                self._array_encoder = BertArrayEncoder(
                    self._backend, self.continues_table(), self._encode_batch_arrays
                )
        if self._array_encoder is False:
            return self._encode_batch_arrays(texts, with_starts)
        return self._array_encoder.encode(texts, with_starts)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Readable text: "##" pieces joined, no spaces between CJK characters. Byte-level BPE
        gives back the exact text; the WordPiece kinds lose the input's own whitespace."""
        ids = [int(i) for i in ids]  # also accepts a tensor or numpy array
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        if self.kind == "bpe":
            return self._backend.decode(ids, skip_special_tokens=False)
        return _join_wordpieces([self.id_to_token(i) for i in ids])

    def id_to_token(self, i: int) -> str:
        token = self._backend.id_to_token(int(i))
        if token is None:
            raise IndexError(f"token id {i} is not in the vocabulary (size {self.vocab_size})")
        return token

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def _vocab_lines(self) -> list[str]:
        by_id = {i: t for t, i in self._backend.get_vocab(with_added_tokens=True).items()}
        # An id no token owns (a repeated line in a loaded vocab.txt) gets a placeholder that no
        # input can produce (BERT splits "[" off), so the ids of all later lines stay put.
        lines = [by_id.get(i, f"[unused_id_{i}]") for i in range(self.vocab_size)]
        if any("\n" in line for line in lines):
            raise ValueError("a token contains a newline; vocab.txt cannot hold it")
        return lines

    def save(self, directory: str | Path) -> None:
        """Write tokenizer.json, vocab.txt (WordPiece kinds) and selfsup_tokenizer.json, each
        atomically; the last one is written last, so its presence means the folder is complete."""
        directory = Path(directory)
        atomic_write_text(directory / TOKENIZER_FILE, self._backend.to_str(pretty=True))
        if self.kind in ("char", "wordpiece"):
            atomic_write_text(
                directory / VOCAB_FILE, "".join(t + "\n" for t in self._vocab_lines())
            )
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "lowercase": self.lowercase,
            "vocab_size": self.vocab_size,
            "special_tokens": {t: self.token_to_id(t) for t in SPECIAL_TOKENS},
        }
        atomic_write_json(directory / META_FILE, meta)

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Read what `save` wrote, a Hugging Face tokenizer.json, or a BERT vocab.txt (with
        transformers' tokenizer_config.json for do_lower_case, default True)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise UserError(f"{directory}: tokenizer directory not found")
        hf_path, meta_path = directory / TOKENIZER_FILE, directory / META_FILE
        if meta_path.is_file() and not hf_path.is_file():
            raise UserError(f"{hf_path}: missing (it is saved next to {META_FILE})")
        if hf_path.is_file():
            backend = _read_backend(hf_path)
            if not meta_path.is_file():
                lowercase = _lowercases(json.loads(backend.to_str()).get("normalizer"))
                return cls(backend, _infer_kind(backend, hf_path), lowercase, str(hf_path))
            meta = _read_json(meta_path)
            if meta.get("kind") not in KINDS:
                raise UserError(f"{meta_path}: field 'kind' must be one of {KINDS}")
            if not isinstance(meta.get("lowercase"), bool):
                raise UserError(f"{meta_path}: field 'lowercase' must be true or false")
            return cls(backend, meta["kind"], meta["lowercase"], str(hf_path))
        if (directory / VOCAB_FILE).is_file():
            config_path = directory / HF_CONFIG_FILE
            config = _read_json(config_path) if config_path.is_file() else {}
            return cls.from_vocab_file(
                directory / VOCAB_FILE,
                lowercase=bool(config.get("do_lower_case", True)),
                strip_accents=config.get("strip_accents"),
            )
        raise UserError(
            f"{directory}: no tokenizer found (expected {TOKENIZER_FILE} or a BERT {VOCAB_FILE})"
        )

    @classmethod
    def from_vocab_file(
        cls, path: str | Path, lowercase: bool = True, strip_accents: bool | None = None
    ) -> Tokenizer:
        """A "wordpiece" tokenizer from a BERT vocab.txt (one token per line, id = line number),
        tokenizing exactly like transformers' BertTokenizerFast with do_lower_case=lowercase.
        strip_accents=None follows lowercase, as in BERT."""
        path = Path(path)
        vocab = _read_vocab_file(path)
        missing = [token for token in SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise UserError(f"{path}: special token(s) {', '.join(missing)} missing")
        return cls(
            _bert_backend(vocab, lowercase, strip_accents), "wordpiece", lowercase, str(path)
        )


_TRAINERS: dict[str, Callable[[Iterable[str], int, int, bool], _HFTokenizer]] = {
    "char": _train_char,
    "wordpiece": _train_wordpiece,
    "bpe": _train_bpe,
}


def train_tokenizer(
    kind: str,
    texts: Iterable[str],
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = False,
) -> Tokenizer:
    """Learn a vocabulary of at most vocab_size tokens (special tokens at ids 0..4) from texts.
    Byte-level BPE always keeps its 256 byte tokens, even above vocab_size."""
    if kind not in _TRAINERS:
        raise UserError(
            f"kind: unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    if vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"vocab_size: {vocab_size} leaves no room after the special tokens")
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not one string")
    backend = _TRAINERS[kind](texts, vocab_size, min_frequency, lowercase)
    return Tokenizer(backend, kind, lowercase, source=f"trained {kind} tokenizer")
