"""BERT encoder: shapes, padding invariance, post- and pre-LN, sparse MLM head."""

import pytest
import torch

from selfsup.errors import UserError
from selfsup.models.bert import BertModel
from selfsup.models.transformer import TransformerConfig, rotary_tables, rotate
from selfsup.objectives.mlm import MaskedLMHead, masked_lm_loss

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, max_position=64)


@pytest.mark.parametrize(
    "norm, positions", [("post", "learned"), ("pre", "learned"), ("pre", "rotary")]
)
def test_shapes_and_padding_invariance(norm, positions):
    model = BertModel(
        TransformerConfig(**TINY, norm_position=norm, position_encoding=positions)
    ).eval()
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


def test_rotary_scores_depend_on_the_offset_only():
    """q(p) . k(p') after rotation is a function of p - p': shifting both positions by the same
    amount leaves every score unchanged (float64 inputs; the tables are float32, whose rounding,
    ~6e-8 relative, moves a score of a few units by ~1e-6)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 6, 8, dtype=torch.float64, generator=g)
    k = torch.randn(1, 2, 6, 8, dtype=torch.float64, generator=g)
    cos, sin = rotary_tables(64, 8)
    scores = rotate(q, cos, sin) @ rotate(k, cos, sin).transpose(-1, -2)
    shifted = rotate(q, cos, sin, 50) @ rotate(k, cos, sin, 50).transpose(-1, -2)
    torch.testing.assert_close(shifted, scores, atol=1e-5, rtol=0)
    assert not torch.allclose(rotate(q, cos, sin), q)  # position 0 stays, the others turn
    torch.testing.assert_close(rotate(q, cos, sin)[..., 0, :], q[..., 0, :])
    # a rotation keeps every vector's length
    torch.testing.assert_close(rotate(q, cos, sin, 7).norm(dim=-1), q.norm(dim=-1))


def test_a_rotary_encoder_has_no_position_table_and_sees_order():
    model = BertModel(TransformerConfig(**TINY, position_encoding="rotary")).eval()
    assert model.embeddings.positions is None
    assert not any("positions" in name for name in model.state_dict())
    ids = torch.tensor([[5, 6, 7, 8]])
    swapped = torch.tensor([[6, 5, 7, 8]])
    # without positions attention is order-blind; with rotary the swap changes token 7's vector
    assert (model(ids)[0, 2] - model(swapped)[0, 2]).abs().max() > 1e-6
    with pytest.raises(UserError, match="max_position"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_rotary_needs_an_even_head_width():
    with pytest.raises(UserError, match="even head width"):
        TransformerConfig(
            **(TINY | dict(hidden_size=36, num_heads=4)), position_encoding="rotary"
        ).validate()


def test_top5_counts_the_label_among_the_five_highest_scores():
    head = MaskedLMHead(4, 10, 1e-12)
    labels = torch.full((1, 3), -100)
    labels[0, 0], labels[0, 1], labels[0, 2] = 9, 4, 0
    hidden = torch.randn(1, 3, 4)
    result = masked_lm_loss(head, hidden, torch.randn(10, 4), labels)
    ranks = result.logits.argsort(-1, descending=True)
    targets = torch.tensor([9, 4, 0])
    expected_top5 = sum(int(t in r[:5]) for t, r in zip(targets, ranks))
    assert int(result.num_top5) == expected_top5
    assert int(result.num_correct) == int((ranks[:, 0] == targets).sum())
