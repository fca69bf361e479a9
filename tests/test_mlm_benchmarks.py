"""benchmarks/mlm_parity_transformers.py and benchmarks/mlm_throughput.py: with weights copied
through selfsup's export mapping, selfsup and transformers' BertForMaskedLM give the same MLM loss
and stay equal after one optimizer step with the mapped parameter groups; the throughput counter
counts only non-pad tokens of a real collator batch; the FLOP formula's known answer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_config

from selfsup.batch import IGNORE_INDEX
from selfsup.data.tokenizer import train_tokenizer
from selfsup.models.transformer import Block
from selfsup.objectives.bert_pretraining import BertPretrainer
from selfsup.trainer import TrainConfig, build_optimizer, lr_at

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="needs transformers (pip install -e .[hf])",
)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


parity = _load("mlm_parity_transformers")
throughput = _load("mlm_throughput")

# float32 has a 2^-24 ~ 6e-8 relative rounding step. The two implementations compute the same
# function in another order (fused vs split q/k/v, embedding sums, dense vs sparse logits), so
# each of the few hundred float32 operations on a value's path may round differently: measured
# differences are ~1e-7 of the loss. rtol 1e-5 keeps a 100x margin over that, while any real
# mismatch (a wrong mask, q/k/v rows in the wrong order, a missing bias) moves it by > 1e-3.
LOSS_RTOL = 1e-5


def _batch(vocab_size: int = 99) -> dict:
    """Two rows, the second padded, both segments used, ~25% of real tokens to predict."""
    g = torch.Generator().manual_seed(1)
    B, T = 2, 12
    input_ids = torch.randint(5, vocab_size, (B, T), generator=g)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[1, 8:] = 0
    input_ids[1, 8:] = 0  # [PAD]
    token_type_ids = torch.zeros(B, T, dtype=torch.long)
    token_type_ids[:, 6:] = 1
    token_type_ids[1, 8:] = 0
    chosen = (torch.rand(B, T, generator=g) < 0.25) & attention_mask.bool()
    chosen[0, 1] = chosen[1, 2] = True  # at least one prediction per row
    labels = torch.full((B, T), IGNORE_INDEX)
    labels[chosen] = torch.randint(5, vocab_size, (B, T), generator=g)[chosen]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "mlm_labels": labels,
        "num_tokens": int(attention_mask.sum()),
    }


def _pair():
    cfg = tiny_config(norm_position="post")
    torch.manual_seed(0)
    model = BertPretrainer(cfg, ["mlm"])
    hf = parity.hf_masked_lm(cfg, pad_id=0)
    parity.copy_into_hf(model, hf)
    return model, hf


def _selfsup_loss(model: BertPretrainer, batch: dict) -> torch.Tensor:
    return model(batch).total_loss(model.item_counts(batch))  # mean over masked tokens


def test_same_loss_after_copying_weights():
    model, hf = _pair()
    batch = _batch()
    ours = _selfsup_loss(model, batch)
    theirs = hf(**parity.hf_inputs(batch)).loss
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=LOSS_RTOL)
    # the held-out sums agree too, computed from transformers' dense logits
    loss_sum, count, _ = parity.hf_loss_sum(hf, batch)
    assert count == int((batch["mlm_labels"] != IGNORE_INDEX).sum())
    assert float(loss_sum.detach()) == pytest.approx(float(ours.detach()) * count, rel=LOSS_RTOL)


def test_decay_groups_follow_selfsup_on_hf_names():
    model, hf = _pair()
    decay = parity.hf_decay_names(model, TrainConfig())
    assert set(decay) == {n for n, _ in hf.named_parameters()}
    layer = "bert.encoder.layer.0."
    for name in (
        "attention.self.query.weight",
        "attention.self.value.weight",
        "output.dense.weight",
    ):
        assert decay[layer + name]
    for name in (
        "attention.self.key.bias",
        "attention.output.LayerNorm.weight",
        "output.LayerNorm.bias",
    ):
        assert not decay[layer + name]
    assert decay["bert.embeddings.word_embeddings.weight"]
    assert (
        not decay["cls.predictions.bias"]
        and not decay["cls.predictions.transform.LayerNorm.weight"]
    )


def test_one_optimizer_step_keeps_them_equal():
    model, hf = _pair()
    # strong weight decay, so a parameter in the wrong group would move by lr * wd * |w| = 1e-4
    # (a LayerNorm weight of 1): ten times the tolerance below
    cfg = TrainConfig(lr=1e-3, weight_decay=0.1, warmup_steps=0, steps=10, max_grad_norm=0.5)
    batch = _batch()
    # selfsup: the step selfsup.trainer.train takes
    optimizer = build_optimizer(model, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(0, cfg)
    _selfsup_loss(model, batch).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    # transformers: the benchmark's step with the mapped groups
    hf_optimizer = parity.hf_optimizer(hf, parity.hf_decay_names(model, cfg), cfg)
    parity.hf_train_step(hf, hf_optimizer, batch, 0, cfg)
    theirs = dict(hf.named_parameters())
    # Adam's first update is lr * g / (|g| + eps): where a gradient is near eps (1e-8), its
    # last-bit differences are magnified by up to |g| / eps, so a weight may differ by a small
    # share of one step (measured: up to 1e-3 of lr); a whole step is lr.
    for name, ours in parity.hf_named_state(model).items():
        assert torch.allclose(ours, theirs[name], rtol=0.0, atol=1e-2 * cfg.lr), name
    # and the next losses are equal again
    after_ours, after_theirs = _selfsup_loss(model, batch), hf(**parity.hf_inputs(batch)).loss
    assert float(after_ours.detach()) == pytest.approx(float(after_theirs.detach()), rel=LOSS_RTOL)


def test_dense_ablation_computes_the_same_loss():
    cfg = tiny_config()
    torch.manual_seed(0)
    sparse = BertPretrainer(cfg, ["mlm"])
    dense = BertPretrainer(cfg, ["mlm"])
    dense.objectives["mlm"] = throughput.DenseMaskedLM(cfg)
    dense.load_state_dict(sparse.state_dict())
    batch = _batch()
    with torch.no_grad():
        assert float(_selfsup_loss(dense, batch)) == pytest.approx(
            float(_selfsup_loss(sparse, batch)), rel=LOSS_RTOL
        )


def test_counter_counts_only_real_tokens_of_a_collator_batch(tmp_path):
    sentences = ["今天天气很好", "我们去公园散步吧", "好", "天气很好我们去公园"]
    tokenizer = train_tokenizer("char", sentences * 3, 100, 1, False)
    hf_tok = throughput.hf_tokenizer(tokenizer, tmp_path / "hf", 16)
    throughput.check_tokenizers_agree(hf_tok, tokenizer, sentences)
    examples = throughput.hf_examples(hf_tok, sentences, max_length=8)
    assert [len(e["input_ids"]) for e in examples] == [8, 8, 3, 8]  # [CLS] text [SEP], cut at 8
    batch = next(throughput.hf_batches(hf_tok, examples[1:3], 2, 0.4, seed=0))
    assert batch["input_ids"].shape == (2, 8)  # padded to the longest
    assert throughput.count_tokens(batch) == (8 + 3, 16)


def test_flop_formula_known_answer():
    cfg = tiny_config(vocab_size=10, hidden_size=4, num_layers=1, num_heads=1, intermediate_size=16)
    # one block: qkv 3*16+12, out 16+4, up 64+16, down 64+4, two LayerNorms 16 = 244 parameters
    assert throughput.block_parameters(cfg) == 244
    assert throughput.block_parameters(cfg) == sum(p.numel() for p in Block(cfg).parameters())
    # 6 * 244 + 12 * 1 * 4 * 8 (attention over 8 tokens) + 6 * 0.5 * (4 * 4 + 4 * 10) (head)
    assert throughput.model_flops_per_token(cfg, seq_len=8, mask_rate=0.5) == 1464 + 384 + 168


def test_peer_model_for_a_rotary_pre_ln_preset():
    # the throughput benchmark reads preset_small at run time; Hugging Face's BERT has neither
    # rotary positions nor pre-LN, so its peer gets a learned table and post-LN, same sizes
    cfg = tiny_config(position_encoding="rotary", norm_position="pre")
    hf = throughput.hf_model(cfg, pad_id=0)
    assert hf.config.position_embedding_type == "absolute"
    assert hf.config.hidden_size == cfg.hidden_size
    assert hf.config.num_hidden_layers == cfg.num_layers
    assert hf.config.num_attention_heads == cfg.num_heads
    assert hf.config.intermediate_size == cfg.ffn_size
