"""GPT: causal masking, the key-value cache, sampling filters and seeds, stop strings, the CLM
data stream, training and exact resume, and the pretrain/generate commands."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_resume_is_exact, tiny_gpt_config
from safetensors.torch import load_file

from selfsup.batch import IGNORE_INDEX
from selfsup.cli import main
from selfsup.data.clm import CausalLMBatches, decode_ids, encode_text, ngram_heldout_loss
from selfsup.inference.generate import (
    GenerationConfig,
    context_start,
    filter_top_k,
    filter_top_p,
    generate_ids,
    stream_text,
)
from selfsup.models.gpt import GPTModel, new_caches
from selfsup.objectives.clm import GPTPretrainer
from selfsup.trainer import TrainConfig, train

CFG = tiny_gpt_config(max_position=24)


def _model(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    model = GPTPretrainer(cfg, ["clm"]).eval()
    with torch.no_grad():  # larger weights than the 0.02 init: logits that differ between tokens
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def _counting_model():
    """A model whose logits calls record how many positions each one read."""
    model, seen = _model(), []
    original = model.logits

    def counting(ids, kv_caches=None, last_only=False):
        seen.append(ids.shape[1])
        return original(ids, kv_caches, last_only)

    model.logits = counting
    return model, seen


def test_no_position_sees_the_future():
    model = GPTModel(CFG).eval()
    ids = torch.randint(0, 99, (2, 16))
    changed = ids.clone()
    changed[:, 7] = (ids[:, 7] + 1) % 99
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=0, rtol=0)
    assert (a[:, 7:] - b[:, 7:]).abs().amax(-1).min() > 1e-4  # and every later one does


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_incremental_cache_equals_full_forward(positions):
    model = _model(tiny_gpt_config(position_encoding=positions))
    ids = torch.randint(0, 99, (1, 12))
    with torch.no_grad():
        full = model.logits(ids)
        caches = new_caches(CFG)
        parts = [model.logits(ids[:, :5], caches)]
        parts += [model.logits(ids[:, t : t + 1], caches) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "sampling",
    [
        GenerationConfig(temperature=0.0),
        GenerationConfig(temperature=1.0, top_k=10, top_p=0.9, seed=3),
    ],
)
def test_cached_generation_equals_uncached(sampling):
    model = _model()
    prompt = [2, 17, 33, 4, 8]
    n = 40  # past max_position=24: the window slides, both paths crop it the same way
    cached = list(
        generate_ids(model, prompt, GenerationConfig(**{**sampling.__dict__, "max_new_tokens": n}))
    )
    plain = list(
        generate_ids(
            model,
            prompt,
            GenerationConfig(**{**sampling.__dict__, "max_new_tokens": n, "use_cache": False}),
        )
    )
    assert cached == plain and len(cached) == n
    assert len(set(cached)) > 1


def test_cache_feeds_one_position_per_new_token():
    model, seen = _counting_model()
    list(generate_ids(model, [1, 2, 3, 4, 5, 6], GenerationConfig(max_new_tokens=10)))
    assert seen == [6] + [1] * 9
    seen.clear()
    list(
        generate_ids(model, [1, 2, 3, 4, 5, 6], GenerationConfig(max_new_tokens=4, use_cache=False))
    )
    assert seen == [6, 7, 8, 9]


def test_context_slides_by_blocks_past_the_window():
    assert [context_start(n, 8, 2) for n in (1, 8, 9, 10, 11, 12, 13)] == [0, 0, 2, 2, 4, 4, 6]
    assert [context_start(n, 8, 1) for n in (8, 9, 10)] == [0, 1, 2]  # nanoGPT's cropping
    model, seen = _counting_model()  # max_position 24: the default slide is 6
    list(generate_ids(model, list(range(1, 21)), GenerationConfig(max_new_tokens=12)))
    # 20 prompt tokens, 4 new ones fill the window; the 25th slides it by 6: 19 are read again
    assert seen == [20, 1, 1, 1, 1, 19, 1, 1, 1, 1, 1, 19]


def test_preallocated_cache_equals_concatenated():
    model = _model()
    ids = torch.randint(0, 99, (2, 20))
    with torch.no_grad():
        outputs = []
        for preallocate in (False, True):
            caches = new_caches(CFG, preallocate=preallocate)
            parts = [model.logits(ids[:, :7], caches)]
            parts += [model.logits(ids[:, t : t + 1], caches) for t in range(7, 20)]
            outputs.append(torch.cat(parts, 1))
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)
    with pytest.raises(ValueError, match="cannot take"):
        new_caches(CFG, preallocate=True)[0].append(
            torch.zeros(1, 2, 25, 4), torch.zeros(1, 2, 25, 4)
        )


def test_top_k_and_top_p_known_answers():
    logits = torch.log(torch.tensor([0.05, 0.5, 0.15, 0.3]))
    assert torch.isfinite(filter_top_k(logits, 2)).tolist() == [False, True, False, True]
    assert torch.isfinite(filter_top_k(logits, 0)).all()
    # kept while the mass ranked above is below p: 0.5 (0), 0.3 (0.5), then 0.15 (0.8)
    assert torch.isfinite(filter_top_p(logits, 0.8)).tolist() == [False, True, False, True]
    assert torch.isfinite(filter_top_p(logits, 0.81)).tolist() == [False, True, True, True]
    assert torch.isfinite(filter_top_p(logits, 0.1)).tolist() == [False, True, False, False]
    batch = filter_top_p(torch.stack([logits, logits.flip(0)]), 0.8)
    assert torch.isfinite(batch).tolist() == [
        [False, True, False, True],
        [True, False, True, False],
    ]


def test_sampling_with_a_seed_is_reproducible():
    model = _model()

    def sample(seed):
        cfg = GenerationConfig(max_new_tokens=30, temperature=1.5, seed=seed)
        return list(generate_ids(model, [5, 6], cfg))

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


class _Run:
    def __init__(self, tokenizer, model=None):
        self.tokenizer, self.model = tokenizer, model


@pytest.fixture(scope="module")
def char_tokenizer():
    from selfsup.data.tokenizer import train_tokenizer

    return train_tokenizer("char", ["abcdx yz", "ROMEO: hi"], 99, 1)


def test_stop_strings_cut_and_hold_back(char_tokenizer, monkeypatch):
    tok = char_tokenizer
    text = "ab cd\n\nxy"
    ids = encode_text(tok, text)[1:]  # no [CLS]: the continuation of a prompt

    def scripted(model, prompt_ids, cfg):
        yield from ids

    monkeypatch.setattr("selfsup.inference.generate.generate_ids", scripted)
    run = _Run(tok)
    assert "".join(stream_text(run, "x\n", GenerationConfig())) == "ab cd\n\nxy"
    assert "".join(stream_text(run, "x\n", GenerationConfig(stop=["\n\n"]))) == "ab cd"
    pieces = list(stream_text(run, "x\n", GenerationConfig(stop=["cx", "d\n\nz"])))
    # streamed token by token, except text that may still become a stop string, which waits
    assert pieces == ["a", "b", " ", "c", "d\n\nx", "y"]


@pytest.mark.parametrize("kind", ["char", "wordpiece", "bpe"])
def test_streamed_pieces_add_up_to_the_decoded_text(kind, monkeypatch):
    """Incremental decoding gives what decoding the whole text gives, whatever the tokens (line
    breaks, continuation pieces, byte-level pieces of a Chinese character split apart)."""
    from selfsup.data.tokenizer import train_tokenizer
    from selfsup.inference.generate import _continuation

    texts = ["the running dog runs", "ROMEO: hi there, running", "中文的字 and 字母", "a.b, c!"]
    tok = train_tokenizer(kind, texts * 5, 300, 1)
    rng = np.random.default_rng(0)
    for trial in range(20):
        ids = [int(i) for i in rng.integers(1, tok.vocab_size, size=60)]  # specials included

        def scripted(model, prompt_ids, cfg, ids=ids):
            yield from ids

        monkeypatch.setattr("selfsup.inference.generate.generate_ids", scripted)
        prompt = texts[trial % len(texts)]
        streamed = "".join(stream_text(_Run(tok), prompt, GenerationConfig()))
        assert streamed == _continuation(tok, encode_text(tok, prompt), ids), (kind, trial)


def test_text_layout_round_trip(char_tokenizer):
    tok = char_tokenizer
    text = "ROMEO: hi\nabc\n\nxy z\n"
    ids = encode_text(tok, text)
    assert ids[0] == tok.cls_id and ids.count(tok.cls_id) == 2 and ids.count(tok.sep_id) == 3
    assert decode_ids(tok, ids) == text


def test_stream_layout_and_heldout_tiling(tmp_path, char_tokenizer):
    from selfsup.data.clm import clm_stream
    from selfsup.data.corpus import Document
    from selfsup.data.token_store import TokenStore, write_token_store

    tok = char_tokenizer
    write_token_store([Document(["ab", "cd"]), Document(["xy"])], tok, tmp_path / "s")
    stream = clm_stream(TokenStore.open(tmp_path / "s"), tok.cls_id, tok.sep_id)
    assert decode_ids(tok, stream.tolist()) == "ab\ncd\n\nxy\n"
    assert stream[0] == tok.cls_id and stream[-1] == tok.sep_id
    data = CausalLMBatches(stream, seq_len=4, batch_size=2, seed=0, pad_id=tok.pad_id)
    held = data.eval_batches(10)
    assert (
        sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in held) == len(stream) - 1
    )  # each token predicted once
    torch.testing.assert_close(data.batch(3)["input_ids"], data.batch(3)["input_ids"])
    b = data.batch(0)
    assert torch.equal(b["input_ids"][:, 1:], b["labels"][:, :-1])


def test_stream_file_is_chunked_reused_and_rebuilt(tmp_path, char_tokenizer, monkeypatch):
    import selfsup.data.clm as clm
    from selfsup.data.corpus import Document
    from selfsup.data.token_store import TokenStore, write_token_store

    tok = char_tokenizer
    docs = [Document(["ab", "cd"]), Document(["xy"]), Document(["a"]), Document(["b", "c", "d"])]
    write_token_store(docs, tok, tmp_path / "s")
    monkeypatch.setattr(clm, "STREAM_CHUNK_DOCUMENTS", 3)  # chunks of 3 documents: a seam
    store = TokenStore.open(tmp_path / "s")
    stream = clm.clm_stream(store, tok.cls_id, tok.sep_id)
    assert isinstance(stream, np.memmap) and stream.dtype == store.tokens.dtype
    assert decode_ids(tok, stream.tolist()) == "ab\ncd\n\nxy\n\na\n\nb\nc\nd\n"
    path = tmp_path / "s" / f"clm_stream-{tok.cls_id}-{tok.sep_id}.npy"
    written = path.stat().st_mtime_ns
    again = clm.clm_stream(TokenStore.open(tmp_path / "s"), tok.cls_id, tok.sep_id)
    assert path.stat().st_mtime_ns == written and np.array_equal(again, stream)  # reused
    write_token_store([Document(["xy"])], tok, tmp_path / "s")  # prepared again: rebuilt
    fresh = clm.clm_stream(TokenStore.open(tmp_path / "s"), tok.cls_id, tok.sep_id)
    assert decode_ids(tok, fresh.tolist()) == "xy\n"
    assert [p.name for p in (tmp_path / "s").glob(".clm_stream*")] == []  # no temporary left


def test_chunked_ngram_counts_equal_direct_counts():
    from collections import Counter

    from selfsup.data.clm import _ngram_counts

    stream = np.random.default_rng(0).integers(0, 6, size=101).astype(np.uint16)
    unigram, codes, counts = _ngram_counts(stream, 6, chunk=7)  # seams every 7 tokens
    assert unigram.tolist() == np.bincount(stream, minlength=6).tolist()
    pairs = Counter(int(a) * 6 + int(b) for a, b in zip(stream[:-1], stream[1:]))
    assert dict(zip(codes.tolist(), counts.tolist())) == dict(pairs)


def test_bigram_baseline_beats_unigram_on_a_pattern():
    stream = np.array([1, 2, 3] * 200)
    data = CausalLMBatches(stream, 8, 4, 0, 0)
    held = data.eval_batches(5)
    unigram = ngram_heldout_loss(stream, held, 5, 1)
    bigram = ngram_heldout_loss(stream, held, 5, 2)
    assert unigram == pytest.approx(np.log(3), abs=0.05) and bigram < 0.05


def _train_clm(run_dir, steps=8, resume=False, on_checkpoint=None):
    cfg = tiny_gpt_config(max_position=24, dropout=0.1)  # dropout: the RNG must resume too
    torch.manual_seed(0)
    model = GPTPretrainer(cfg, ["clm"])
    stream = np.tile(np.arange(5, 60), 40)
    data = CausalLMBatches(stream, 16, 4, 0, 0)
    tcfg = TrainConfig(
        steps=steps,
        batch_size=4,
        lr=3e-3,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=1,
        eval_batches=2,
        progress=False,
    )
    metrics = train(model, data, tcfg, run_dir, resume=resume, on_checkpoint=on_checkpoint)
    return metrics, load_file(run_dir / "model.safetensors")


def test_clm_training_lowers_loss_and_resumes_exactly(tmp_path):
    metrics, _ = _train_clm(tmp_path / "long", steps=60)
    # from ln(99) = 4.6 and chance accuracy: the counting pattern 5, 6, ..., 59 is learnt
    assert metrics["eval_clm_loss"] < 3.0 and metrics["eval_clm_accuracy"] > 0.9
    assert_resume_is_exact(lambda *a, **k: _train_clm(*a, **k)[1], tmp_path, kill_at=6)


def _corpus(path: Path) -> Path:
    turns = ["ROMEO:\nO she doth teach the torches", "JULIET:\nAy me", "ROMEO:\nShe speaks"]
    path.write_text("\n\n".join(turns * 6) + "\n", encoding="utf-8")
    return path


TINY = [
    "--preset",
    "gpt-tiny",
    "train.progress=false",
    "train.eval_batches=2",
    "train.log_every=10",
]


def test_pretrain_gpt_then_generate(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["pretrain", *TINY, "--corpus", str(_corpus(tmp_path / "c.txt")), "--out", str(run)]
    args += ["tokenizer.min_frequency=1", "train.steps=150", "train.lr=5e-3", "model.dropout=0"]
    args += ["data.heldout_fraction=0.2", "model.attention_dropout=0", "train.batch_size=8"]
    assert main(args) == 0
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["eval_clm_loss"] < final["eval_clm_bigram_loss"] < final["eval_clm_unigram_loss"]
    assert json.loads((run / "config.json").read_text())["arch"] == "gpt"
    capsys.readouterr()
    assert (
        main(["generate", str(run), "--prompt", "JULIET:\\n", "--greedy", "--max-tokens", "8"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("JULIET:\nAy me"), out
    assert main(["generate", str(run), "--prompt", "ROMEO:", "--stop", "\\n", "--seed", "1"]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # the prompt's line, stopped at its end
    code = main(["fill-mask", str(run), "a[MASK]"])
    assert code == 2 and "not pretrained with mlm" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["generate", "{bert}", "--prompt", "a"], "generation needs a gpt run"),
        (["generate", "{missing}", "--prompt", "a"], "no such run folder"),
        (["generate", "{bert}", "--top-p", "1.5"], "top-p must be in (0, 1]"),
        (["generate", "{bert}", "--temperature", "-1"], "temperature must be >= 0"),
        (["generate", "{bert}", "--slide", "-1"], "--slide must be >= 0"),
        (
            ["pretrain", "--arch", "gpt", "--objectives", "mlm", "--out", "{new}"],
            "unknown mlm for arch gpt",
        ),
        (
            ["pretrain", "--preset", "gpt-tiny", "--corpus", "tinyshakespeare", "--out", "{new}"],
            "tinyshakespeare",
        ),
    ],
)
def test_user_errors_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    from selfsup.runs import RunFolder

    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))  # a data folder without the corpus
    (tmp_path / "bert").mkdir()
    RunFolder(tmp_path / "bert").write_marker("pretraining", "bert")
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"arch": "bert"}))
    places = {"bert": tmp_path / "bert", "missing": tmp_path / "nope", "new": tmp_path / "new"}
    code = main([a.format(**places) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("selfsup: error:"), err
    assert message in lines[0]
