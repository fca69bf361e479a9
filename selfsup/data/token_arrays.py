"""Many texts tokenized into flat numpy arrays: what corpus preparation writes, with no Python
object per token.

`TokenArrays` holds the tokens of a batch of texts back to back (ids, whether each continues the
previous token's word, and optionally where it starts in its text) and each text's token count.
Two ways to get one:

- `arrays_from_encodings`: from any tokenizer's per-text encodings (`ids`, `offsets`,
  `continues_word`), the generic path;
- `BertArrayEncoder`: for tokenizers with BERT's pipeline (`BertNormalizer`, `BertPreTokenizer`:
  the "char" and "wordpiece" kinds and every BERT vocab.txt), the same ids computed on the
  batch's code points with numpy. BERT's pipeline decides everything character by character
  except inside a run of letters and digits, so:

  1. each distinct character is classified once, by asking the tokenizer itself (its normalizer,
     its pre-tokenizer, its encoding of the character alone): dropped (control characters),
     whitespace, a token on its own (CJK characters and punctuation, with its id), a character of
     a word (letters, digits), or "not simple" (a character whose normalization is not one
     character, such as "İ" lowercased; one that could reorder with its neighbours);
  2. the batch's code points are looked up in that table; a word is a maximal run of word
     characters (dropped characters inside it do not end it, as `clean_text` removes them
     first), and the batch's distinct words are tokenized by the tokenizer itself (cached);
  3. a text holding a "not simple" character or the literal text of an added token ("[MASK]")
     is tokenized by `encode_batch`, whole.

  The result is the ids, offsets and flags `encode_batch` gives (tests/test_data_path.py
  compares them on real and adversarial text, for char, WordPiece and BERT vocab.txt / Hugging
  Face tokenizer.json tokenizers), at 6-9M characters a second on one thread where
  `encode_batch` alone runs at 0.5-0.8M on Chinese text: a Chinese character is one token, and
  `encode_batch` builds ~300 bytes of Python objects for each (docs/PERFORMANCE.md, "Data
  path").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # token_store imports this module; only the array path needs tokenizers
    from tokenizers import Tokenizer as _HFTokenizer

_UNSEEN, _DROP, _SPACE, _ALONE, _WORD, _NOT_SIMPLE = range(6)
_CODE_POINTS = 0x110000


@dataclass
class TokenArrays:
    """Tokens of several texts back to back: text i's are the next lengths[i] entries."""

    ids: np.ndarray  # (N,) int64
    lengths: np.ndarray  # (S,) int64, tokens per text
    continues_word: np.ndarray  # (N,) bool: the token continues the previous token's word
    starts: np.ndarray | None = None  # (N,) int64 character offset in its text, if asked for


def exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    """(len + 1,) int64: 0, counts[0], counts[0] + counts[1], ..."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def arrays_from_encodings(encodings: Sequence[Any], with_starts: bool) -> TokenArrays:
    """TokenArrays of per-text encodings with `ids`, `offsets` and `continues_word` lists."""
    lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
    total = int(lengths.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64, total)
    continues = np.fromiter(
        chain.from_iterable(e.continues_word for e in encodings), np.bool_, total
    )
    starts = None
    if with_starts:
        starts = np.fromiter((s for e in encodings for s, _ in e.offsets), np.int64, total)
    return TokenArrays(ids, lengths, continues, starts)


def merge_rows(base: TokenArrays, rows: np.ndarray, other: TokenArrays) -> TokenArrays:
    """`base` with the tokens of texts `rows` (which have none in `base`) taken from `other`,
    whose text j is text rows[j] of `base`."""
    lengths = base.lengths.copy()
    lengths[rows] += other.lengths
    out = exclusive_cumsum(lengths)

    def destinations(source: TokenArrays, text_of_row: np.ndarray) -> np.ndarray:
        row = np.repeat(np.arange(len(source.lengths)), source.lengths)
        shift = out[text_of_row] - exclusive_cumsum(source.lengths)[:-1]
        return np.arange(len(source.ids)) + shift[row]

    to_base = destinations(base, np.arange(len(lengths)))
    to_other = destinations(other, rows)

    def merged(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        result = np.empty(int(out[-1]), dtype=a.dtype)
        result[to_base], result[to_other] = a, b
        return result

    starts = None
    if base.starts is not None and other.starts is not None:
        starts = merged(base.starts, other.starts)
    return TokenArrays(
        merged(base.ids, other.ids),
        lengths,
        merged(base.continues_word, other.continues_word),
        starts,
    )


_HASH_BASE = np.uint64(0x100000001B3)  # FNV's 64-bit prime: any odd multiplier would do


def distinct_runs(chars: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The distinct runs among runs of code points laid end to end (`chars`, run i the next
    lengths[i]): (the index of one run of each distinct content, each run's distinct index).

    Runs are grouped by a polynomial hash (mod 2^64), then every run is compared with its
    group's representative code point by code point, so the grouping is exact; (None, _) when
    two different runs share a hash (the caller then groups by text)."""
    first = exclusive_cumsum(lengths)
    run = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(chars), dtype=np.int64) - first[:-1][run]
    powers = np.ones(int(lengths.max()), dtype=np.uint64)
    np.cumprod(np.full(len(powers) - 1, _HASH_BASE), out=powers[1:])  # wraps mod 2^64
    terms = (chars.astype(np.uint64) + np.uint64(1)) * powers[position]
    hashes = np.add.reduceat(terms, first[:-1]) ^ lengths.astype(np.uint64)
    _, representative, which = np.unique(hashes, return_index=True, return_inverse=True)
    same_run = representative[which]
    same = (lengths[same_run] == lengths).all() and np.array_equal(
        chars[first[:-1][same_run][run] + position], chars
    )
    return (representative, which.reshape(-1)) if same else (None, which)


def _reorderable(char: str) -> bool:
    """Whether canonical decomposition could move a mark across this character's neighbours:
    a decomposition with a combining class that is not a removable nonspacing mark."""
    return any(
        unicodedata.combining(c) and unicodedata.category(c) != "Mn"
        for c in unicodedata.normalize("NFD", char)
    )


class BertArrayEncoder:
    """`encode_batch`'s ids for a BERT-pipeline tokenizer, computed on whole batches with numpy
    (see the module docstring). `continues_table[id]` is the tokenizer's own flag per id."""

    CACHE_WORDS = 1 << 14  # words kept between batches, per generation (~150 bytes each)

    def __init__(
        self,
        backend: _HFTokenizer,
        continues_table: np.ndarray,
        fallback: Callable[[list[str], bool], TokenArrays],
    ) -> None:
        self.backend = backend
        self.continues_table = continues_table
        self.fallback = fallback
        self.classes = np.zeros(_CODE_POINTS, dtype=np.uint8)  # _UNSEEN until classified
        self.alone_ids = np.zeros(_CODE_POINTS, dtype=np.int32)
        self.added = [t.content for t in backend.get_added_tokens_decoder().values()]
        self.words: dict[str, bytes] = {}  # word -> (id, start) int32 pairs of its pieces
        self.older_words: dict[str, bytes] = {}

    @staticmethod
    def supports(backend: _HFTokenizer) -> bool:
        """BERT's normalizer (or none) and pre-tokenizer, which decide per character, and added
        tokens matched on the raw text (their literal text sends a text to `encode_batch`)."""
        from tokenizers import normalizers, pre_tokenizers

        normalizer = backend.normalizer
        return (
            (normalizer is None or isinstance(normalizer, normalizers.BertNormalizer))
            and isinstance(backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
            and not any(t.normalized for t in backend.get_added_tokens_decoder().values())
        )

    def _classify(self, char: str) -> tuple[int, int]:
        """(class, id if the character is a token on its own) as the tokenizer treats it."""
        try:
            normalized = char
            if self.backend.normalizer is not None:
                normalized = self.backend.normalizer.normalize_str(char)
            if normalized == "":
                return _DROP, 0
            if _reorderable(char):
                return _NOT_SIMPLE, 0
            words = [w for w, _ in self.backend.pre_tokenizer.pre_tokenize_str(f"a{normalized}a")]
            if words == ["a", "a"]:
                return _SPACE, 0
            if len(normalized) == 1 and words == [f"a{normalized}a"]:
                return _WORD, 0
            if len(normalized.strip()) == 1 and words == ["a", normalized.strip(), "a"]:
                encoding = self.backend.encode(char, add_special_tokens=False)
                if len(encoding.ids) == 1 and encoding.offsets[0] == (0, 1):
                    return _ALONE, encoding.ids[0]
        except Exception:  # a lone surrogate: left to encode_batch, which reports it
            pass
        return _NOT_SIMPLE, 0

    def _learn(self, codes: np.ndarray) -> None:
        for code in np.unique(codes).tolist():
            self.classes[code], self.alone_ids[code] = self._classify(chr(code))

    def _encode_words(self, words: list[str]) -> list[bytes]:
        """Each word as the tokenizer encodes it alone: (id, start in the word) int32 pairs."""
        encodings = self.backend.encode_batch(words, add_special_tokens=False)
        counts = np.fromiter(map(len, encodings), np.int64, len(encodings))
        total = int(counts.sum())
        pairs = np.empty((total, 2), dtype=np.int32)
        pairs[:, 0] = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int32, total)
        starts = (start for e in encodings for start, _ in e.offsets)
        pairs[:, 1] = np.fromiter(starts, np.int32, total)
        data, bounds = pairs.tobytes(), (8 * exclusive_cumsum(counts)).tolist()
        return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _word_pieces(self, distinct: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The tokenizer's own encoding of each of the `distinct` words: (piece ids and piece
        starts in the word, back to back; pieces per word).

        Words seen recently come from a cache of two generations of at most CACHE_WORDS words
        each (the older one dropped when the newer fills up; a word found there moves up), so
        its memory is bounded and reached early, whatever the corpus's vocabulary."""
        recent, older = self.words, self.older_words
        entries = [recent.get(word) or older.get(word) for word in distinct]
        missing = [word for word, entry in zip(distinct, entries, strict=True) if entry is None]
        encoded = iter(self._encode_words(missing) if missing else ())
        entries = [entry or next(encoded) for entry in entries]
        for word, entry in zip(distinct, entries, strict=True):
            recent[word] = entry
        if len(recent) > self.CACHE_WORDS:
            self.older_words, self.words = recent, {}
        pairs = np.frombuffer(b"".join(entries), dtype=np.int32).reshape(-1, 2)
        counts = np.fromiter(map(len, entries), np.int64, len(entries)) // 8
        return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), counts

    def encode(self, texts: list[str], with_starts: bool) -> TokenArrays:
        num_texts = len(texts)
        joined = "".join(texts)
        text_lengths = np.fromiter(map(len, texts), np.int64, num_texts)
        text_offsets = exclusive_cumsum(text_lengths)
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        classes = self.classes[codes]
        if not classes.all():
            self._learn(codes[classes == _UNSEEN])
            classes = self.classes[codes]
        text_of = np.repeat(np.arange(num_texts), text_lengths)

        by_encode_batch = np.zeros(num_texts, dtype=bool)
        not_simple = classes == _NOT_SIMPLE
        if not_simple.any():
            by_encode_batch[text_of[not_simple]] = True
        if any(token in joined for token in self.added):
            for row, text in enumerate(texts):
                by_encode_batch[row] |= any(token in text for token in self.added)
        if by_encode_batch.any():
            classes = np.where(by_encode_batch[text_of], np.uint8(_DROP), classes)

        # dropped characters (clean_text's) go first: they do not end a word
        position = np.flatnonzero(classes != _DROP)
        if len(position) < len(classes):
            classes, codes, text_of = classes[position], codes[position], text_of[position]
            text = codes.tobytes().decode("utf-32-le", "surrogatepass")
        else:
            text = joined

        word = classes == _WORD
        inside = np.zeros(len(word), dtype=bool)  # a word character after one of its word
        inside[1:] = word[1:] & word[:-1] & (text_of[1:] == text_of[:-1])
        run_starts = np.flatnonzero(word & ~inside)

        alone = classes == _ALONE
        is_token = alone.copy()
        token_ids = np.zeros(len(classes), dtype=np.int64)
        token_ids[alone] = self.alone_ids[codes[alone]]
        if len(run_starts):
            last = word.copy()
            last[:-1] &= ~inside[1:]
            run_ends = np.flatnonzero(last) + 1
            representative, which = distinct_runs(codes[word], run_ends - run_starts)
            if representative is None:  # two words with one hash: sort them out by text
                index: dict[str, int] = {}
                runs = zip(run_starts.tolist(), run_ends.tolist(), strict=True)
                which = np.fromiter(
                    (index.setdefault(text[a:b], len(index)) for a, b in runs), np.int64
                )
                distinct = list(index)
            else:
                bounds = zip(
                    run_starts[representative].tolist(),
                    run_ends[representative].tolist(),
                    strict=True,
                )
                distinct = [text[a:b] for a, b in bounds]
            piece_ids, piece_starts, piece_counts = self._word_pieces(distinct)
            counts = piece_counts[which]
            first = exclusive_cumsum(piece_counts)[which] - exclusive_cumsum(counts)[:-1]
            pieces = np.repeat(first, counts) + np.arange(int(counts.sum()))
            at = np.repeat(run_starts, counts) + piece_starts[pieces]
            is_token[at] = True
            token_ids[at] = piece_ids[pieces]
        where = np.flatnonzero(is_token)
        ids = token_ids[where]
        rows = text_of[where]
        starts = position[where] - text_offsets[rows] if with_starts else None
        result = TokenArrays(
            ids,
            np.bincount(rows, minlength=num_texts).astype(np.int64),
            self.continues_table[ids],
            starts,
        )
        if by_encode_batch.any():
            rows = np.flatnonzero(by_encode_batch)
            rest = self.fallback([texts[i] for i in rows.tolist()], with_starts)
            result = merge_rows(result, rows, rest)
        return result
