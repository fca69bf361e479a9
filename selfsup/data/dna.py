"""DNA sequences as input to a text BERT: readers, the paper's split, the base -> token mapping,
and a k-mer baseline (issue 14).

Follows Kao & Lee 2021, "Is BERT a Cross-Disciplinary Knowledge Learner?" (Findings of EMNLP
2021), as their code does it (sky1456723/BERT-non-text, DNA/; see
../shared/data/dna-splice/KAO_LEE_2021.md):

- Readers return `TextExample(text=sequence, label=label)` and a `ReadReport`, like the readers of
  `selfsup.data.labelled`: FASTA (`read_fasta`), CSV with a sequence and a label column
  (`read_sequence_csv`, GUE's files) and the UCI "class, name, sequence" lines
  (`read_uci_sequences`, splice and promoters). A sequence is upper-cased and may hold A C G T
  and the IUPAC ambiguity letters (splice has N D R S); anything else is a one-line `UserError`
  "file:line: ..." unless `skip_bad=True`. `load_splice`, `load_promoters` and `load_gue` read the
  shared data sets.
- `paper_split`: "random.seed(100)" then a shuffle of all examples; train is the first
  `int(n * 0.9)`, dev up to `int(n * 0.95)`, test the rest (their preprocess_splice.py,
  finetune.py and evaluate.py). `kfold` gives cross-validation folds (the UCI sets have no split).
- `BaseVocabularyMapping`: the paper writes "A T C G ..." for bert-base-uncased and then replaces
  every input id by `table[id]`, a random permutation into ids >= 1000, so that each base (and
  [CLS], [SEP]) becomes a random English word or word piece; the README calls this "necessary to
  reproduce the performance". Mode "random" draws such a table from a seed; "letters" is their
  un-shifted input (a -> "a"); "chars" is whatever one of selfsup's own tokenizers makes of a base.
- `kmer_baseline`: a task-specific baseline without a transformer (normalised overlapping k-mer
  counts and a multinomial logistic regression with a dev-chosen L2 penalty; `positional=True`
  adds the one-hot base at each position, which splice needs: counts alone reach about 0.65-0.69
  test accuracy on its paper split, with the positions 0.96). The paper's own baseline is
  Hilbert-CNN (Yin et al. 2018); this one is cheaper and needs no extra code.
  `kmer_cross_validation` scores it by nested cross-validation for sets without a split.

Deviations: the paper also maps [PAD] to a random word; padded positions are hidden by the
attention mask, so the mapping keeps the vocabulary's own [PAD]. Their table is a permutation of
the whole vocabulary; only the few symbols a DNA input uses matter, so we draw just those, from
every id that is not a special token, an `[unused...]` slot or below `min_id` (pass
`min_id=1000` for exactly their range on bert-base-uncased).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.data.labelled import (
    ReadReport,
    TextExample,
    _BadRecord,
    _field_text,
    _reject,
    _tabular_records,
    existing_file,
)
from selfsup.data.sources import shared_set_path
from selfsup.data.text import decoded_lines
from selfsup.data.tokenizer import SPECIAL_TOKENS, Tokenizer
from selfsup.errors import UserError

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Bases
# ---------------------------------------------------------------------------------------------

DNA_BASES = "ACGT"
# IUPAC nucleotide codes: the four bases, U (RNA) and the ambiguity letters (N any base, R A/G,
# S C/G, D not C, ...). UCI splice uses N D R S.
IUPAC_BASES = "ACGTUNRYSWKMBDHV"
# The order in which the mapping draws tokens: A C G T first, so with one seed they get the same
# tokens whether or not a data set also holds N or other ambiguity letters.
_BASE_ORDER = "ACGTN" + "BDHKMRSUVWY"
_EXPECTED_BASES = f"expected a base ({' '.join(IUPAC_BASES)}; lowercase is accepted)"


def _sequence(raw: str) -> str:
    """`raw` stripped and upper-cased; a _BadRecord naming the first character that is not a base
    and its position (1-based) in the stripped text."""
    sequence = raw.strip().upper()
    if not sequence:
        raise _BadRecord("empty sequence", "empty sequence; expected bases")
    for position, char in enumerate(sequence, start=1):
        if char not in IUPAC_BASES:
            raise _BadRecord(
                "not a base", f"character {char!r} at position {position}; {_EXPECTED_BASES}"
            )
    return sequence


def alphabet(sequences: Iterable[str]) -> str:
    """The base letters present in `sequences`, A C G T first (the order a mapping draws in)."""
    present = set().union(*(set(sequence.upper()) for sequence in sequences))
    unknown = sorted(present - set(IUPAC_BASES))
    if unknown:
        raise UserError(f"character {unknown[0]!r} in a sequence; {_EXPECTED_BASES}")
    return "".join(base for base in _BASE_ORDER if base in present)


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------

# A FASTA label rule: None (unlabelled), a regular expression searched in the header (its group
# "label", else its first group, else the whole match) or a function of the header.
LabelRule = str | re.Pattern[str] | Callable[[str], str | None] | None


def last_field(separator: str = "|") -> Callable[[str], str]:
    """A label rule: the header's last `separator`-separated field (">seq7|promoter" ->
    "promoter"), the convention of many classification FASTA files."""

    def label(header: str) -> str:
        return header.rsplit(separator, 1)[-1]

    return label


def _header_label(header: str, label_from: LabelRule) -> str:
    """The label `label_from` finds in `header`; "" for unlabelled reading."""
    if label_from is None:
        return ""
    if callable(label_from):
        label = label_from(header)
    else:
        pattern = re.compile(label_from)
        match = pattern.search(header)
        if match is None:
            raise _BadRecord(
                "no label in header",
                f"header {header!r} does not match {pattern.pattern!r}; expected a label in it",
            )
        group: int | str = "label" if "label" in pattern.groupindex else min(pattern.groups, 1)
        label = match.group(group)
    if not label or not label.strip():
        raise _BadRecord("empty label", f"no label in header {header!r}; expected a label")
    return label.strip()


@dataclass
class _FastaRecord:
    line: int  # of the header
    header: str
    parts: list[str] = field(default_factory=list)
    bad: bool = False  # a bad line was reported (skip_bad): the record is dropped


def _fasta_records(
    path: Path, report: ReadReport, skip_bad: bool
) -> Iterator[tuple[_FastaRecord, str]]:
    """(record, place for messages) of each FASTA record, its lines checked one by one so that a
    bad character is reported at its own line."""
    current: _FastaRecord | None = None
    for number, raw in decoded_lines(path):
        line = raw.strip()
        if not line or line.startswith(";"):  # blank lines and old-style comments
            continue
        if line.startswith(">"):
            if current is not None:
                yield current, f"{path}:{current.line}"
            current = _FastaRecord(number, line[1:].strip())
            continue
        try:
            if current is None:
                raise _BadRecord(
                    "sequence before header",
                    "sequence line before the first '>' header; expected a FASTA file",
                )
            if not current.bad:
                current.parts.append(_sequence(line))
        except _BadRecord as bad:
            _reject(bad, f"{path}:{number}", report, skip_bad)
            if current is not None:
                current.bad = True
    if current is not None:
        yield current, f"{path}:{current.line}"


def read_fasta(
    path: str | Path, label_from: LabelRule = None, skip_bad: bool = False
) -> tuple[list[TextExample], ReadReport]:
    """Read FASTA: a `>` header line, then the sequence on one or more lines; blank lines and
    `;` comment lines are ignored.

    The label comes from the header through `label_from` (see `LabelRule`; `last_field()` for
    ">name|label"); with None every label is "" (unlabelled use, e.g. pretraining text). A record
    with a non-base character, no sequence lines or no label is a UserError "file:line: ..."
    unless `skip_bad`, in which case the record is counted in the report and left out.
    """
    path = existing_file(Path(path))
    report = ReadReport()
    examples = []
    for record, where in _fasta_records(path, report, skip_bad):
        if record.bad:
            continue
        try:
            if not record.parts:
                raise _BadRecord(
                    "empty sequence",
                    f"header {record.header!r} has no sequence lines; expected bases after it",
                )
            label = _header_label(record.header, label_from)
        except _BadRecord as bad:
            _reject(bad, where, report, skip_bad)
            continue
        examples.append(TextExample("".join(record.parts), label))
    if not examples and not report.skipped:
        raise UserError(f"{path}: no records; expected '>' header lines, each followed by bases")
    return examples, report


def read_sequence_csv(
    path: str | Path,
    sequence_field: str = "sequence",
    label_field: str = "label",
    skip_bad: bool = False,
) -> tuple[list[TextExample], ReadReport]:
    """Read a CSV (or TSV) with a header row naming a sequence and a label column, as GUE's
    `sequence,label` files; other columns are ignored. Errors as in `read_fasta`."""
    path = existing_file(Path(path))
    report = ReadReport()
    examples = []
    for number, record in _tabular_records(path, [sequence_field, label_field]):
        try:
            if isinstance(record, _BadRecord):
                raise record
            sequence = _sequence(_field_text(record, sequence_field, "sequence"))
            examples.append(TextExample(sequence, _field_text(record, label_field, "label")))
        except _BadRecord as bad:
            _reject(bad, f"{path}:{number}", report, skip_bad)
    if not examples and not report.skipped:
        raise UserError(f"{path}: no records; expected sequences after the header")
    return examples, report


def read_uci_sequences(
    path: str | Path, skip_bad: bool = False
) -> tuple[list[TextExample], ReadReport]:
    """Read the UCI molecular-biology format: one `class, name, sequence` line per example, no
    header, fields padded with spaces or tabs (splice.data: "EI,    ATRINS-DONOR-521,    CCAG...";
    promoters.data: "+,S10,\\t\\ttact..."). Errors as in `read_fasta`."""
    path = existing_file(Path(path))
    report = ReadReport()
    examples = []
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        try:
            fields = [part.strip() for part in line.split(",")]
            if len(fields) != 3:
                raise _BadRecord(
                    "wrong field count",
                    f"{len(fields)} comma-separated fields; expected 'class, name, sequence'",
                )
            if not fields[0]:
                raise _BadRecord("empty label", "empty class; expected 'class, name, sequence'")
            examples.append(TextExample(_sequence(fields[2]), fields[0]))
        except _BadRecord as bad:
            _reject(bad, f"{path}:{number}", report, skip_bad)
    if not examples and not report.skipped:
        raise UserError(f"{path}: no records; expected 'class, name, sequence' lines")
    return examples, report


# ---------------------------------------------------------------------------------------------
# The shared data sets
# ---------------------------------------------------------------------------------------------

SPLICE_LABELS = ("EI", "IE", "N")  # Kao & Lee's label ids 0, 1, 2 (also the sorted order)
GUE_SPLITS = ("train", "dev", "test")


def _folder(root: str | Path | None, shared: str, needed_by: str) -> Path:
    return Path(root) if root is not None else shared_set_path(shared, needed_by)


def load_splice(root: str | Path | None = None) -> list[TextExample]:
    """UCI splice junctions (3,190 x 60 nt; EI, IE, N) from `root`/splice.txt, by default the
    shared dna-splice/ folder: the very file Kao & Lee read, in file order, which is the order
    `paper_split` shuffles (duplicates kept, as they did)."""
    folder = _folder(root, "dna-splice", "load_splice")
    return read_uci_sequences(folder / "splice.txt")[0]


def load_promoters(root: str | Path | None = None) -> list[TextExample]:
    """UCI E. coli promoters (106 x 57 nt; labels "+" and "-") from `root`/promoters.data, by
    default the shared dna-promoters/ folder. There is no official split: UCI reports
    leave-one-out (`kfold(106, k=106)`)."""
    folder = _folder(root, "dna-promoters", "load_promoters")
    return read_uci_sequences(folder / "promoters.data")[0]


def gue_task_dir(task: str, root: str | Path | None = None) -> Path:
    """The folder of a GUE subset such as "prom/prom_core_tata" or "EMP/H3" under `root`, by
    default the shared dna-gue/ folder."""
    path = _folder(root, "dna-gue", f"GUE task {task!r}") / task
    if not path.is_dir():
        raise UserError(f"{path}: no such GUE task folder; expected e.g. prom/prom_core_tata")
    return path


def load_gue(task_dir: str | Path, split: str) -> list[TextExample]:
    """One split ("train", "dev" or "test") of a GUE subset folder (see `gue_task_dir`)."""
    if split not in GUE_SPLITS:
        raise UserError(f"GUE split {split!r}; expected one of {', '.join(GUE_SPLITS)}")
    path = Path(task_dir) / f"{split}.csv"
    if not path.is_file():
        hint = ""
        if "EMP" in path.parts:  # see dna-gue/SOURCE.md
            hint = " (the shared copy has no EMP train files; train on dev, evaluate on test)"
        raise UserError(f"{path}: no such file; expected GUE's {split}.csv{hint}")
    return read_sequence_csv(path)[0]


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def paper_split(n: int, seed: int = 100) -> dict[str, list[int]]:
    """Kao & Lee's split of `n` examples, as indices: `random.seed(seed)` and `random.shuffle`
    of the example list (the shuffle depends only on its length, so shuffling indices gives the
    same order), then train = the first `int(n * 0.9)`, dev up to `int(n * 0.95)`, test the
    rest. Splice: 3190 -> 2871 / 159 / 160. Indices keep the shuffled order."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    train_end, dev_end = int(n * 0.9), int(n * 0.95)
    return {"train": order[:train_end], "dev": order[train_end:dev_end], "test": order[dev_end:]}


@dataclass
class Fold:
    """One cross-validation fold: indices to train on and to test on, each sorted."""

    train: list[int]
    test: list[int]


def kfold(n: int, k: int = 5, seed: int = 0) -> list[Fold]:
    """`k` folds of a seeded shuffle of range(n): every index is in exactly one test fold, test
    folds differ in size by at most one, and `k = n` is leave-one-out."""
    if not 2 <= k <= n:
        raise ValueError(f"k={k} folds of {n} examples; expected 2 <= k <= n")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    bounds = [n * i // k for i in range(k + 1)]
    folds = []
    for i in range(k):
        test = set(order[bounds[i] : bounds[i + 1]])
        folds.append(Fold([j for j in range(n) if j not in test], sorted(test)))
    return folds


def apply_split(items: Sequence[T], indices: dict[str, list[int]]) -> dict[str, list[T]]:
    """`paper_split`'s (or any) index lists turned into lists of items."""
    return {name: [items[i] for i in chosen] for name, chosen in indices.items()}


# ---------------------------------------------------------------------------------------------
# Base -> vocabulary token
# ---------------------------------------------------------------------------------------------

MAPPING_MODES = ("random", "letters", "chars")
MAPPING_VERSION = 1
_CLS, _SEP, _PAD = "[CLS]", "[SEP]", "[PAD]"
# [PAD] [CLS] [unused7] (BERT), [unused_id_12] (selfsup's placeholder), <s> <pad> (BPE vocabularies)
_RESERVED = re.compile(r"\[[^\[\]]*\]|<[^<>\s]*>")

# A vocabulary: token strings by id (a BERT vocab.txt as a list; None for an id with no token), or
# a selfsup tokenizer.
Vocabulary = Sequence[str | None] | Tokenizer


def _vocab_tokens(vocabulary: Vocabulary) -> tuple[list[str | None], frozenset[int]]:
    """The token of every id (None where no token owns it) and the ids the vocabulary calls
    special."""
    if isinstance(vocabulary, Tokenizer):
        tokens: list[str | None] = []
        for i in range(vocabulary.vocab_size):
            try:
                tokens.append(vocabulary.id_to_token(i))
            except IndexError:  # a hole left by a repeated line in a loaded vocab.txt
                tokens.append(None)
        return tokens, vocabulary.special_ids
    tokens = list(vocabulary)
    return tokens, frozenset(i for i, token in enumerate(tokens) if token in SPECIAL_TOKENS)


def drawable_ids(vocabulary: Vocabulary, min_id: int = 0) -> list[int]:
    """Ids a random mapping may use: every id from `min_id` on whose token is not special,
    bracketed ([unused12], [PAD], <s>), empty or missing."""
    tokens, special = _vocab_tokens(vocabulary)
    return [
        i
        for i, token in enumerate(tokens)
        if i >= min_id and i not in special and token and not _RESERVED.fullmatch(token)
    ]


def _own_id(vocabulary: Vocabulary, token: str) -> int | None:
    """The id of `token` in the vocabulary (the last one, as BERT's vocab loader, when
    repeated)."""
    if isinstance(vocabulary, Tokenizer):
        return vocabulary.token_to_id(token)
    found = None
    for i, candidate in enumerate(vocabulary):
        if candidate == token:
            found = i
    return found


def _required_id(vocabulary: Vocabulary, token: str, why: str) -> int:
    i = _own_id(vocabulary, token)
    if i is None:
        raise UserError(f"the vocabulary has no {token} token; expected one for {why}")
    return i


def _check_bases(bases: Iterable[str]) -> list[str]:
    """The distinct upper-cased letters of `bases` in drawing order, each an IUPAC base."""
    letters = {base.upper() for base in bases}
    unknown = sorted(letters - set(IUPAC_BASES))
    if unknown or not letters:
        raise UserError(f"bases {''.join(sorted(letters))!r}; {_EXPECTED_BASES}")
    return [base for base in _BASE_ORDER if base in letters]


@dataclass
class BaseVocabularyMapping:
    """Which vocabulary token stands for each base, and for [CLS] and [SEP].

    `ids` and `tokens` have the same keys: the base letters and "[CLS]", "[SEP]". `pad_id` is the
    vocabulary's own [PAD] (0 when it has none): padded positions are masked out. `seed` is the
    draw's seed in mode "random", None otherwise. Build one with `random`, `letters`, `chars` (or
    `build(mode, ...)`), record it with `to_json`, read it back with `from_json`.
    """

    mode: str
    ids: dict[str, int]
    tokens: dict[str, str]
    pad_id: int
    vocab_size: int
    seed: int | None = None

    @classmethod
    def _make(
        cls, mode: str, vocabulary: Vocabulary, ids: dict[str, int], seed: int | None
    ) -> BaseVocabularyMapping:
        tokens, _ = _vocab_tokens(vocabulary)
        pad_id = _own_id(vocabulary, _PAD)
        return cls(
            mode,
            ids,
            {symbol: tokens[i] or "" for symbol, i in ids.items()},
            0 if pad_id is None else pad_id,
            len(tokens),
            seed,
        )

    @classmethod
    def random(
        cls,
        vocabulary: Vocabulary,
        seed: int,
        bases: Iterable[str] = DNA_BASES,
        map_special: bool = True,
        min_id: int = 0,
    ) -> BaseVocabularyMapping:
        """Each base (and [CLS], [SEP] when `map_special`) gets a distinct token drawn at random
        from `drawable_ids(vocabulary, min_id)`: the paper's "shift table".

        The drawable ids are shuffled by `random.Random(seed)` and handed out in a fixed order,
        [CLS], [SEP], A, C, G, T, N, then the other letters; so one seed gives A C G T the same
        tokens whatever other letters the data holds or whether the specials are mapped.
        """
        symbols = [_CLS, _SEP] + _check_bases(bases)
        pool = drawable_ids(vocabulary, min_id)
        if len(pool) < len(symbols):
            raise UserError(
                f"the vocabulary has {len(pool)} drawable tokens (not special, not [unused], id "
                f">= {min_id}); expected at least {len(symbols)}"
            )
        random.Random(seed).shuffle(pool)
        ids = dict(zip(symbols, pool))
        if not map_special:
            ids[_CLS] = _required_id(vocabulary, _CLS, "map_special=False")
            ids[_SEP] = _required_id(vocabulary, _SEP, "map_special=False")
        return cls._make("random", vocabulary, ids, seed)

    @classmethod
    def letters(
        cls, vocabulary: Vocabulary, bases: Iterable[str] = DNA_BASES
    ) -> BaseVocabularyMapping:
        """Each base as its own lower-case letter token ("a" in bert-base-uncased), else its
        upper-case one; [CLS] and [SEP] as themselves: the paper's input before the shift."""
        ids = {
            _CLS: _required_id(vocabulary, _CLS, "mode 'letters'"),
            _SEP: _required_id(vocabulary, _SEP, "mode 'letters'"),
        }
        for base in _check_bases(bases):
            found = _own_id(vocabulary, base.lower())
            found = _own_id(vocabulary, base) if found is None else found
            if found is None:
                raise UserError(
                    f"the vocabulary has neither {base.lower()!r} nor {base!r}; expected a "
                    "letter token per base for mode 'letters' (mode 'random' needs none)"
                )
            ids[base] = found
        return cls._make("letters", vocabulary, ids, None)

    @classmethod
    def chars(cls, tokenizer: Tokenizer, bases: Iterable[str] = DNA_BASES) -> BaseVocabularyMapping:
        """Each base as the one token `tokenizer` makes of it written alone (so, as in the
        paper's "A T C G", every base is a word start, never a "##" piece), for selfsup's
        character tokenizers; [CLS] and [SEP] as themselves."""
        ids = {_CLS: tokenizer.cls_id, _SEP: tokenizer.sep_id}
        for base in _check_bases(bases):
            encoded = tokenizer.encode(base).ids
            if len(encoded) != 1 or encoded[0] == tokenizer.unk_id:
                pieces = [tokenizer.id_to_token(i) for i in encoded]
                raise UserError(
                    f"the tokenizer makes {pieces} of base {base!r}; expected one known token "
                    "for mode 'chars' (mode 'random' needs none)"
                )
            ids[base] = encoded[0]
        return cls._make("chars", tokenizer, ids, None)

    @classmethod
    def build(
        cls, mode: str, vocabulary: Vocabulary, bases: Iterable[str] = DNA_BASES, seed: int = 0
    ) -> BaseVocabularyMapping:
        """The mapping of `mode` ("random", "letters", "chars"), for a config value."""
        if mode == "random":
            return cls.random(vocabulary, seed, bases)
        if mode == "letters":
            return cls.letters(vocabulary, bases)
        if mode == "chars":
            if not isinstance(vocabulary, Tokenizer):
                raise UserError("mode 'chars' needs a selfsup tokenizer, not a token list")
            return cls.chars(vocabulary, bases)
        raise UserError(f"DNA mapping mode {mode!r}; expected one of {', '.join(MAPPING_MODES)}")

    @property
    def bases(self) -> str:
        return "".join(symbol for symbol in self.ids if symbol not in (_CLS, _SEP))

    def encode(self, sequence: str, max_length: int | None = None) -> list[int]:
        """[CLS] id, one id per base, [SEP] id, keeping the first `max_length - 2` bases when the
        sequence is longer (the paper's 62 for splice's 60 nt, 502 for the 500-nt histone sets)."""
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length={max_length}; expected at least 2 ([CLS] and [SEP])")
        body = sequence.upper() if max_length is None else sequence.upper()[: max_length - 2]
        try:
            middle = [self.ids[base] for base in body]
        except KeyError as error:
            raise UserError(
                f"base {error.args[0]!r} is not in the mapping (bases {self.bases}); build it "
                "with bases=alphabet(all sequences)"
            ) from None
        return [self.ids[_CLS], *middle, self.ids[_SEP]]

    def describe(self) -> str:
        """One line for a log: "random seed 100: A->shove T->syntax ..."."""
        pairs = " ".join(f"{symbol}->{self.tokens[symbol]}" for symbol in self.ids)
        seed = f" seed {self.seed}" if self.seed is not None else ""
        return f"{self.mode}{seed}: {pairs}"

    def to_json(self) -> dict[str, Any]:
        """A small JSON-ready dict, to record in a run folder which mapping a run used."""
        return {
            "version": MAPPING_VERSION,
            "mode": self.mode,
            "seed": self.seed,
            "vocab_size": self.vocab_size,
            "pad_id": self.pad_id,
            "ids": dict(self.ids),
            "tokens": dict(self.tokens),
        }

    @classmethod
    def from_json(
        cls, data: Any, vocabulary: Vocabulary | None = None, source: str = "DNA mapping"
    ) -> BaseVocabularyMapping:
        """Read what `to_json` wrote; with `vocabulary`, also check that every id still holds the
        recorded token, so a mapping is never applied to a model with another vocabulary."""
        if not isinstance(data, dict) or data.get("version") != MAPPING_VERSION:
            raise UserError(f"{source}: expected a JSON object with version {MAPPING_VERSION}")
        ids, tokens = data.get("ids"), data.get("tokens")
        if data.get("mode") not in MAPPING_MODES:
            raise UserError(f"{source}: mode {data.get('mode')!r}; expected one of {MAPPING_MODES}")
        if not (
            isinstance(ids, dict)
            and isinstance(tokens, dict)
            and ids.keys() == tokens.keys()
            and {_CLS, _SEP} <= ids.keys()
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids.values())
            and all(isinstance(t, str) for t in tokens.values())
        ):
            raise UserError(
                f"{source}: expected 'ids' (symbol -> int) and 'tokens' (symbol -> str) with the "
                "same symbols, [CLS] and [SEP] among them"
            )
        for name in ("vocab_size", "pad_id"):
            if not isinstance(data.get(name), int):
                raise UserError(f"{source}: field {name!r} must be an integer")
        seed = data.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise UserError(f"{source}: field 'seed' must be an integer or null")
        if not all(0 <= i < data["vocab_size"] for i in ids.values()):
            raise UserError(f"{source}: an id outside the vocabulary of {data['vocab_size']}")
        _check_bases(symbol for symbol in ids if symbol not in (_CLS, _SEP))
        mapping = cls(data["mode"], ids, tokens, data["pad_id"], data["vocab_size"], seed)
        if vocabulary is not None:
            mapping.check_vocabulary(vocabulary, source)
        return mapping

    def check_vocabulary(self, vocabulary: Vocabulary, source: str = "DNA mapping") -> None:
        """A UserError unless `vocabulary` has this mapping's size and tokens at its ids."""
        tokens, _ = _vocab_tokens(vocabulary)
        if len(tokens) != self.vocab_size:
            raise UserError(
                f"{source}: made for a vocabulary of {self.vocab_size} tokens; this one has "
                f"{len(tokens)}"
            )
        for symbol, i in self.ids.items():
            if (tokens[i] or "") != self.tokens[symbol]:
                raise UserError(
                    f"{source}: {symbol} is id {i}, recorded as {self.tokens[symbol]!r} but "
                    f"{tokens[i]!r} in this vocabulary; expected the vocabulary it was made for"
                )


# ---------------------------------------------------------------------------------------------
# Task-specific baseline: k-mer counts + multinomial logistic regression
# ---------------------------------------------------------------------------------------------

PENALTY_GRID = (1.0, 0.1, 0.01, 0.001, 0.0001)  # strongest first: a dev tie keeps the stronger
_BASE_CODE = np.full(256, -1, dtype=np.int64)
_BASE_CODE[[ord(base) for base in DNA_BASES]] = np.arange(4)


def _base_codes(sequences: Sequence[str]) -> np.ndarray:
    """(N, longest length) int64: 0..3 for A C G T, -1 for an ambiguity letter or padding."""
    codes = np.full((len(sequences), max(map(len, sequences))), -1, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        codes[row, : len(sequence)] = _BASE_CODE[
            np.frombuffer(sequence.upper().encode("ascii", "replace"), np.uint8)
        ]
    return codes


def _kmer_counts(codes: np.ndarray, k: int) -> np.ndarray:
    """(N, 4^k) float32 frequencies of the overlapping k-mers of each row of `codes`."""
    counts = np.zeros((codes.shape[0], 4**k), dtype=np.float32)
    if codes.shape[1] < k:
        return counts
    windows = np.lib.stride_tricks.sliding_window_view(codes, k, axis=1)  # (N, L-k+1, k)
    valid = (windows >= 0).all(axis=2)
    index = (np.clip(windows, 0, 3) * 4 ** np.arange(k - 1, -1, -1)).sum(axis=2)  # (N, L-k+1)
    rows = np.broadcast_to(np.arange(codes.shape[0])[:, None], index.shape)
    np.add.at(counts, (rows[valid], index[valid]), 1.0)
    return counts / np.maximum(valid.sum(axis=1, keepdims=True), 1).astype(np.float32)


def kmer_features(
    sequences: Sequence[str], k_max: int = 4, k_min: int = 1, positional: bool = False
) -> torch.Tensor:
    """(N, sum of 4^k for k = k_min..k_max) float32: for each k, the counts of every overlapping
    k-mer divided by the number of k-mers in the sequence, so that sequences of any length are
    comparable. A k-mer that contains an ambiguity letter (N, R, ...) is left out.

    `positional` appends the one-hot base at every position (4 x the longest length columns;
    compute all splits in one call so that they agree). Counts cannot say WHERE a motif is, and
    splice junctions are fixed positions (the GT/AG at the centre of each 60-nt window).
    """
    if not 1 <= k_min <= k_max:
        raise ValueError(f"k_min={k_min}, k_max={k_max}; expected 1 <= k_min <= k_max")
    codes = _base_codes(sequences)
    blocks = [_kmer_counts(codes, k) for k in range(k_min, k_max + 1)]
    if positional:
        one_hot = (codes[:, :, None] == np.arange(4)).astype(np.float32)  # (N, L, 4)
        blocks.append(one_hot.reshape(len(sequences), -1))
    return torch.from_numpy(np.concatenate(blocks, axis=1))


def _standardised(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Every matrix centred and scaled by the training columns' mean and std, so that one L2 grid
    suits every k (4-mer frequencies are 16x smaller than 2-mer ones)."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    penalty: float,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (L, D), bias (L,)) minimising mean cross-entropy + penalty/2 * |weight|^2 (the bias
    is not penalised), full batch with L-BFGS: deterministic, no learning rate to tune."""
    weight = torch.zeros(num_classes, features.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weight.T + bias  # (N, L)
        loss = F.cross_entropy(logits, labels) + 0.5 * penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _correct(
    model: tuple[torch.Tensor, torch.Tensor], features: torch.Tensor, labels: torch.Tensor
) -> int:
    """How many rows of `features` the model labels right."""
    weight, bias = model
    return int(((features @ weight.T + bias).argmax(1) == labels).sum())


def _label_ids(label_names: list[str], examples: Sequence[TextExample]) -> torch.Tensor:
    index = {name: i for i, name in enumerate(label_names)}
    return torch.tensor([index[example.label] for example in examples])


@dataclass
class KmerBaselineResult:
    """Test accuracy with the penalty chosen on dev, and dev accuracy for every penalty tried."""

    test_accuracy: float
    penalty: float
    dev_accuracy: dict[float, float]
    k_max: int
    positional: bool
    labels: list[str]
    seconds: float


def kmer_baseline(
    train: Sequence[TextExample],
    dev: Sequence[TextExample],
    test: Sequence[TextExample],
    k_max: int = 4,
    k_min: int = 1,
    positional: bool = False,
    penalties: Sequence[float] = PENALTY_GRID,
    max_iter: int = 100,
) -> KmerBaselineResult:
    """Train the k-mer logistic regression once per penalty on `train`, keep the one with the
    best dev accuracy (the first of `penalties` on a tie) and score it on `test`."""
    start = time.perf_counter()
    names = sorted({example.label for split in (train, dev, test) for example in split})
    # one call for all splits, so that positional columns agree (counts are per example)
    features = kmer_features(
        [e.text for split in (train, dev, test) for e in split], k_max, k_min, positional
    )
    x_train, x_dev, x_test = _standardised(*features.split([len(train), len(dev), len(test)]))
    y_train, y_dev, y_test = (_label_ids(names, split) for split in (train, dev, test))
    models, dev_accuracy = {}, {}
    for penalty in penalties:
        models[penalty] = fit_logistic_regression(x_train, y_train, len(names), penalty, max_iter)
        dev_accuracy[penalty] = _correct(models[penalty], x_dev, y_dev) / len(dev)
    best = max(penalties, key=lambda penalty: dev_accuracy[penalty])  # first maximum
    test_accuracy = _correct(models[best], x_test, y_test) / len(test)
    return KmerBaselineResult(
        test_accuracy, best, dev_accuracy, k_max, positional, names, time.perf_counter() - start
    )


@dataclass
class CrossValidationResult:
    """Pooled accuracy over all test folds (every example scored once) and the penalty each
    outer fold chose."""

    accuracy: float
    correct: int
    total: int
    penalties: list[float]
    seconds: float


def kmer_cross_validation(
    examples: Sequence[TextExample],
    folds: Sequence[Fold],
    k_max: int = 4,
    k_min: int = 1,
    positional: bool = False,
    penalties: Sequence[float] = PENALTY_GRID,
    inner_folds: int = 5,
    seed: int = 0,
    max_iter: int = 100,
) -> CrossValidationResult:
    """The k-mer baseline scored by cross-validation (`kfold`; k = n for leave-one-out), for sets
    without a split. Each outer fold picks its penalty by an inner `inner_folds`-fold
    cross-validation on its own training part (nested), so no test example steers the choice."""
    start = time.perf_counter()
    names = sorted({example.label for example in examples})
    features = kmer_features([e.text for e in examples], k_max, k_min, positional)
    labels = _label_ids(names, examples)

    def score(train: list[int], test: list[int], penalty: float) -> int:
        x_train, x_test = _standardised(features[train], features[test])
        model = fit_logistic_regression(x_train, labels[train], len(names), penalty, max_iter)
        return _correct(model, x_test, labels[test])

    correct, chosen = 0, []
    for fold in folds:
        best = penalties[0]
        if len(penalties) > 1:
            inner = kfold(len(fold.train), inner_folds, seed)
            hits = {
                penalty: sum(
                    score(
                        [fold.train[i] for i in f.train], [fold.train[i] for i in f.test], penalty
                    )
                    for f in inner
                )
                for penalty in penalties
            }
            best = max(penalties, key=lambda penalty: hits[penalty])
        chosen.append(best)
        correct += score(fold.train, fold.test, best)
    total = sum(len(fold.test) for fold in folds)
    return CrossValidationResult(
        correct / total, correct, total, chosen, time.perf_counter() - start
    )


# ---------------------------------------------------------------------------------------------
# Fine-tuning on sequences: a tokenizer that reads a text as bases
# ---------------------------------------------------------------------------------------------


@dataclass
class _BaseIds:
    ids: list[int]


class MappedSequenceTokenizer:
    """A model's tokenizer that reads each text as a sequence of bases, one token per base as
    `mapping` says, and puts the mapping's [CLS] and [SEP] around it (the paper maps those too).
    Everything else (padding id, vocabulary size, saving) is the wrapped tokenizer's: the task
    code that encodes classification examples needs no change."""

    def __init__(self, tokenizer: Tokenizer, mapping: BaseVocabularyMapping) -> None:
        mapping.check_vocabulary(tokenizer, "task.sequence_mapping")
        self._tokenizer, self.mapping = tokenizer, mapping

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    @property
    def cls_id(self) -> int:
        return self.mapping.ids[_CLS]

    @property
    def sep_id(self) -> int:
        return self.mapping.ids[_SEP]

    def encode_batch(self, texts: Iterable[str]) -> list[_BaseIds]:
        return [_BaseIds(self.mapping.encode(text)[1:-1]) for text in texts]
