"""Resident memory of a CPU run stays flat when the buffers of a step keep their sizes: the sparse
prediction's rows are padded to a multiple of 64 (selfsup.memory.pad_prediction_rows), which must
change neither the loss nor any gradient. benchmarks/memory_vs_transformers.py measures the memory
itself (docs/PERFORMANCE.md, "Memory"); these tests check the mechanism, not the machine."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.batch import IGNORE_INDEX
from selfsup.memory import PREDICTION_ROWS_MULTIPLE, pad_prediction_rows
from selfsup.objectives.mlm import MaskedLMHead


def _loss_and_grads(padded: bool, rows: int, seed: int = 0):
    torch.manual_seed(seed)
    head = MaskedLMHead(16, 50, 1e-12)
    with torch.no_grad():  # biases that are not zero: the padding rows are not zero inside
        head.transform.bias.normal_()
        head.bias.normal_()
    embeddings = torch.randn(50, 16, requires_grad=True)
    hidden = torch.randn(rows, 16, requires_grad=True)
    targets = torch.randint(0, 50, (rows,))
    targets[::7] = IGNORE_INDEX  # ignored targets among the real rows stay ignored
    x, t = pad_prediction_rows(hidden, targets) if padded else (hidden, targets)
    logits = head(x, embeddings)
    loss = F.cross_entropy(logits.float(), t, reduction="sum")
    loss.backward()
    grads = [hidden.grad, embeddings.grad, *(p.grad for p in head.parameters())]
    return logits.shape[0], loss.detach(), grads


def test_padded_rows_change_neither_the_loss_nor_any_gradient():
    for rows in (1, 37, 63, 100):
        n, loss, grads = _loss_and_grads(True, rows)
        n_plain, loss_plain, grads_plain = _loss_and_grads(False, rows)
        assert n % PREDICTION_ROWS_MULTIPLE == 0 and n_plain == rows < n
        torch.testing.assert_close(loss, loss_plain, rtol=1e-6, atol=1e-6)
        for g, g_plain in zip(grads, grads_plain):
            assert g.shape == g_plain.shape and torch.isfinite(g).all()
            torch.testing.assert_close(g, g_plain, rtol=1e-5, atol=1e-6)


def test_rows_take_few_sizes_and_a_multiple_is_left_as_it_is():
    # the masked-token counts of 1,000 steps of 16 x 128 tokens at 15%: 153 to 295, 112 values
    sizes = {
        pad_prediction_rows(torch.zeros(m, 4), torch.zeros(m, dtype=torch.long))[0].shape[0]
        for m in range(153, 296)
    }
    assert sizes == {192, 256, 320}
    hidden, targets = torch.randn(128, 4), torch.arange(128)
    x, t = pad_prediction_rows(hidden, targets)
    assert x is hidden and t is targets  # no copy
    empty = pad_prediction_rows(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,)
    x, t = pad_prediction_rows(torch.ones(3, 4), torch.tensor([1, 2, 3]), multiple=8)
    assert x.shape == (8, 4) and (x[3:] == 0).all() and t.tolist() == [1, 2, 3] + [-100] * 5


def test_the_masked_lm_head_projects_padded_rows_and_reports_the_masked_ones():
    from selfsup.objectives.mlm import masked_lm_loss

    torch.manual_seed(0)
    head = MaskedLMHead(16, 50, 1e-12)
    embeddings, hidden = torch.randn(50, 16), torch.randn(2, 9, 16)
    labels = torch.full((2, 9), IGNORE_INDEX)
    labels[0, 1:4], labels[1, 5] = torch.tensor([3, 4, 5]), 7  # 4 masked positions
    projected = []
    head.register_forward_hook(lambda _m, _i, out: projected.append(out.shape[0]))
    result = masked_lm_loss(head, hidden, embeddings, labels)
    assert projected == [PREDICTION_ROWS_MULTIPLE] and result.num_masked == 4
    assert result.logits.shape == (4, 50)
    plain = F.cross_entropy(head(hidden[labels != IGNORE_INDEX], embeddings), labels[labels >= 0])
    torch.testing.assert_close(result.loss_sum, plain * 4)
