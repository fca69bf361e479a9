"""BERT pretraining batches: packed windows fill every row with real tokens, in stream order."""

import numpy as np
import pytest
import torch

from selfsup.data.corpus import Document
from selfsup.data.masking import MaskingConfig
from selfsup.data.pretraining import BertPretrainingBatches, SpecialIds, packed_instances
from selfsup.data.token_store import TokenStore, write_token_store
from selfsup.data.tokenizer import train_tokenizer
from selfsup.errors import UserError

DOCUMENTS = [
    Document(["中华人民共和国成立了。", "人民很高兴！"]),
    Document(["第二篇文章。", "有三句话？", "对。"]),
    Document(["单句"]),
]


def _store(tmp_path):
    texts = [s for d in DOCUMENTS for s in d.sentences]
    tokenizer = train_tokenizer("char", texts, min_frequency=1)
    write_token_store(DOCUMENTS, tokenizer, tmp_path)
    special = SpecialIds(
        tokenizer.pad_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
        tokenizer.mask_id,
        frozenset(tokenizer.special_ids),
    )
    return TokenStore.open(tmp_path), special


def test_packed_windows_tile_the_stream_across_sentences_and_documents(tmp_path):
    store, _ = _store(tmp_path)
    instances = packed_instances(store, max_tokens=5)
    lengths = instances.ends - instances.starts
    assert (lengths[:-1] == 5).all() and 0 < lengths[-1] <= 5
    assert instances.starts[0] == 0 and instances.ends[-1] == store.num_tokens
    np.testing.assert_array_equal(instances.starts[1:], instances.ends[:-1])  # no gap, no overlap
    # each window is labelled with the document its first token belongs to
    document_starts = store.sentence_offsets[store.document_offsets[:-1]]
    for start, document in zip(instances.starts, instances.documents):
        assert document_starts[document] <= start
        assert document + 1 == len(document_starts) or start < document_starts[document + 1]


def test_a_packed_batch_has_no_padding_and_reads_the_corpus_in_order(tmp_path):
    store, special = _store(tmp_path)
    masking = MaskingConfig(rate=0.5)
    batches = BertPretrainingBatches(store, special, ["mlm"], masking, 7, 100, seed=0, pack=True)
    batch = batches.batch(0)  # one batch holds the whole (shuffled) corpus
    full_rows = batch["attention_mask"].sum(1) == 7
    assert int((~full_rows).sum()) <= 1  # only the stream's last window may be short
    # undo the masks: labels hold the original ids where a token was hidden
    ids = torch.where(batch["mlm_labels"] != -100, batch["mlm_labels"], batch["input_ids"])
    rows = [row[mask.bool()].tolist() for row, mask in zip(ids, batch["attention_mask"])]
    assert all(r[0] == special.cls and r[-1] == special.sep for r in rows)
    pieces = sorted(r[1:-1] for r in rows)
    expected = sorted(
        store.tokens[lo:hi].tolist()
        for lo, hi in zip(batches.instances.starts, batches.instances.ends)
    )
    assert pieces == expected
    assert batch["num_tokens"] == store.num_tokens + 2 * len(rows)


def test_packing_refuses_sentence_pair_objectives(tmp_path):
    store, special = _store(tmp_path)
    with pytest.raises(UserError, match="data.pack=true .* sop needs pairs"):
        BertPretrainingBatches(store, special, ["mlm", "sop"], MaskingConfig(), 16, 4, 0, True)


def test_the_small_preset_with_sop_fails_before_any_work(tmp_path, capsys):
    """The preset packs; asking it for sop is one line at once, not after tokenizing."""
    from selfsup.cli import main

    out = tmp_path / "run"
    code = main(["pretrain", "--preset", "small", "--objectives", "mlm,sop", "--out", str(out)])
    assert code == 2
    assert "add data.pack=false" in capsys.readouterr().err
    assert not (out / "run.json").exists() and not (out / "config.json").exists()
