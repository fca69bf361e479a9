"""Text runs in the playground, beyond what `selfsup.inference` already does (fill-mask, answers,
generation): a BERT's contextual vectors, and the label distribution or the tags of a fine-tuned
classifier or tagger.

Shape legend: P picked words, T tokens, C width, L labels.

Contextual vectors show the lecture's point that BERT gives the same character different vectors
in different contexts (static embeddings such as word2vec give it one). A picked word is a
character span of one sentence; its vector is the mean of the encoder's last hidden states over
the tokens that overlap the span (one token per character for Chinese). Their cosine similarities
and a 2-D projection (the first two principal components) are what the page draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfsup.data.labelled import TaggedExample, TextExample
from selfsup.errors import UserError
from selfsup.recipes import LoadedRun
from selfsup.tasks.base import predict_logits
from selfsup.tasks.tagging import units_of


@dataclass
class PickedWord:
    sentence: int  # index into the sentences
    start: int  # character offsets into that sentence, end exclusive
    end: int


@dataclass
class ContextualView:
    picks: list[PickedWord]
    similarity: np.ndarray  # (P, P) cosine similarities
    points: np.ndarray  # (P, 2) the vectors' first two principal components


def find_word(sentences: list[str], word: str) -> list[PickedWord]:
    """Every occurrence of `word` in the sentences, in reading order."""
    picks = []
    for s, sentence in enumerate(sentences):
        start = sentence.find(word)
        while start >= 0:
            picks.append(PickedWord(s, start, start + len(word)))
            start = sentence.find(word, start + len(word))
    return picks


def _device(run: LoadedRun) -> torch.device:
    return next(run.model.parameters()).device


@torch.no_grad()
def contextual_vectors(run: LoadedRun, sentences: list[str], picks: list[PickedWord]) -> np.ndarray:
    """(P, C) last-layer vectors of the picked words of a pretrained BERT run."""
    tok, encoder = run.tokenizer, run.model.encoder
    limit = encoder.config.max_position
    hidden: dict[int, tuple[torch.Tensor, list[tuple[int, int]]]] = {}
    for s in sorted({p.sentence for p in picks}):
        enc = tok.encode(sentences[s])
        ids = [tok.cls_id, *enc.ids, tok.sep_id]
        if len(ids) > limit:
            raise UserError(f"sentence {s + 1} is {len(ids)} tokens long; this model reads {limit}")
        states = encoder(torch.tensor([ids], device=_device(run)))[0, 1:-1]  # (T, C)
        hidden[s] = (states.float().cpu(), enc.offsets)
    vectors = []
    for p in picks:
        states, offsets = hidden[p.sentence]
        rows = [t for t, (a, b) in enumerate(offsets) if a < p.end and b > p.start]
        if not rows:
            raise UserError(
                f"characters {p.start}-{p.end} of sentence {p.sentence + 1} are in no token "
                "(spaces only?)"
            )
        vectors.append(states[rows].mean(0))
    return torch.stack(vectors).numpy()


def cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    """(P, C) -> (P, P)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def principal_components_2d(vectors: np.ndarray) -> np.ndarray:
    """(P, C) -> (P, 2) coordinates on the two directions of largest variance (zeros where there
    is no variance). Each axis is signed so that its largest coordinate is positive, so the same
    vectors always give the same picture."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    points = np.zeros((len(vectors), 2))
    if len(vectors) < 2:
        return points
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    rank = min(2, int((s > 1e-9 * max(s[0], 1e-30)).sum()))
    points[:, :rank] = u[:, :rank] * s[:rank]
    for axis in range(rank):
        if points[np.abs(points[:, axis]).argmax(), axis] < 0:
            points[:, axis] *= -1
    return points


def contextual_view(
    run: LoadedRun, sentences: list[str], picks: list[PickedWord]
) -> ContextualView:
    """Similarities and a 2-D picture of the picked words' contextual vectors."""
    if not picks:
        raise UserError("pick at least one word (none of the sentences contains it)")
    for p in picks:
        if not (
            0 <= p.sentence < len(sentences) and 0 <= p.start < p.end <= len(sentences[p.sentence])
        ):
            raise UserError(f"pick {p.start}-{p.end} of sentence {p.sentence + 1} is outside it")
    vectors = contextual_vectors(run, sentences, picks)
    return ContextualView(picks, cosine_similarities(vectors), principal_components_2d(vectors))


def _logits(run: LoadedRun, examples: list) -> tuple[list, list[np.ndarray]]:
    features = run.task.encode(examples, training=False)
    return features, predict_logits(run.model, features, run.task.collate, device=_device(run))


def check_fits(run: LoadedRun, text: str) -> None:
    """A UserError when a text has more tokens than the run's inputs hold (the tasks would cut
    it silently; the page says so instead)."""
    limit = run.config.task.max_seq_len - 2
    n = len(run.tokenizer.encode(text).ids)
    if n > limit:
        raise UserError(f"text is {n} tokens long; this model reads at most {limit}")


def label_probabilities(
    run: LoadedRun, text: str, text_b: str | None = None
) -> list[tuple[str, float]]:
    """(label, probability) of a fine-tuned classification or pair run, most likely first."""
    check_fits(run, text + (text_b or ""))
    labels = run.task.labels
    _, (logits,) = _logits(run, [TextExample(text, labels[0], text_b)])  # the label is unused
    probs = torch.from_numpy(logits).double().softmax(-1).tolist()
    return sorted(zip(labels, probs), key=lambda item: -item[1])


def tagged_characters(run: LoadedRun, text: str) -> list[tuple[int, int, str]]:
    """(start, end, tag) of every tagged unit of `text` (each character but spaces) from a
    fine-tuned tagging run."""
    check_fits(run, text)
    example = TaggedExample(text, [run.task.outside] * len(text))  # tags unused at inference
    features, outputs = _logits(run, [example])
    (tags,) = run.task.predict(features, outputs)
    spans, _ = units_of(example)
    return [(start, end, tag) for (start, end), tag in zip(spans, tags)]
