"""BERT encoder: shapes, padding invariance, post- and pre-LN, sparse MLM head."""

import pytest
import torch

from selfsup.errors import UserError
from selfsup.models.bert import BertModel
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.mlm import MaskedLMHead, masked_lm_loss

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, max_position=64)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_shapes_and_padding_invariance(norm):
    model = BertModel(TransformerConfig(**TINY, norm_position=norm)).eval()
    lengths = [5, 12, 9]
    T = max(lengths)
    ids = torch.randint(5, 99, (3, T))
    types = torch.randint(0, 2, (3, T))
    mask = torch.zeros(3, T, dtype=torch.long)
    for r, n in enumerate(lengths):
        mask[r, :n] = 1
    padded = model(ids, mask, types)
    assert padded.shape == (3, T, 32)
    for r, n in enumerate(lengths):
        alone = model(ids[r : r + 1, :n], None, types[r : r + 1, :n])
        torch.testing.assert_close(padded[r, :n], alone[0], atol=1e-5, rtol=1e-5)
    # a different pad token id changes nothing either
    ids2 = ids.clone()
    ids2[mask == 0] = 7
    torch.testing.assert_close(
        model(ids2, mask, types)[mask.bool()], padded[mask.bool()], atol=1e-5, rtol=1e-5
    )


def test_encoder_is_bidirectional():
    model = BertModel(TransformerConfig(**TINY)).eval()
    ids = torch.randint(5, 99, (1, 10))
    changed = ids.clone()
    changed[0, 9] = (ids[0, 9] + 1) % 99
    # changing the last token changes the first token's output (unlike a causal decoder)
    assert not torch.allclose(model(ids)[0, 0], model(changed)[0, 0])


def test_too_long_sequence_is_a_clear_error():
    model = BertModel(TransformerConfig(**TINY))
    with pytest.raises(UserError, match="max_position"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_heads_must_divide_width():
    with pytest.raises(UserError, match="divisible"):
        BertModel(TransformerConfig(vocab_size=10, hidden_size=30, num_heads=4))


def test_sparse_mlm_loss_equals_dense():
    torch.manual_seed(0)
    head = MaskedLMHead(32, 99, 1e-12)
    emb = torch.randn(99, 32)
    hidden = torch.randn(2, 7, 32)
    labels = torch.full((2, 7), -100)
    labels[0, 2], labels[1, 5], labels[1, 6] = 11, 40, 3
    result = masked_lm_loss(head, hidden, emb, labels)
    dense = torch.nn.functional.cross_entropy(
        head(hidden, emb).view(-1, 99), labels.view(-1), reduction="sum"
    )
    torch.testing.assert_close(result.loss_sum, dense)
    assert result.num_masked == 3 and result.logits.shape == (3, 99)
