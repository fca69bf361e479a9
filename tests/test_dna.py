"""DNA input (selfsup/data/dna.py): FASTA/CSV/UCI readers and their file:line errors, Kao & Lee's
split and k-fold folds, the base -> token mapping, and the k-mer baseline on a task whose answer
is known. The last tests read ../shared/data and skip when it is absent."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from selfsup.data.dna import (
    BaseVocabularyMapping,
    MappedSequenceTokenizer,
    alphabet,
    apply_split,
    drawable_ids,
    gue_task_dir,
    kfold,
    kmer_baseline,
    kmer_cross_validation,
    kmer_features,
    last_field,
    load_gue,
    load_promoters,
    load_splice,
    paper_split,
    read_fasta,
    read_sequence_csv,
    read_uci_sequences,
)
from selfsup.data.labelled import TextExample
from selfsup.data.tokenizer import Tokenizer, train_tokenizer
from selfsup.errors import UserError

# ../shared/data relative to the repo root, which holds this tests/ folder.
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _need(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the shared public data sets are not checked out here")
    return folder


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------- readers


FASTA = """\
; an old-style comment
>seq1 chr1|promoter
ACGTAC
gtna

>seq2 chr2|other
TTTT
"""


def test_fasta_multiline_records_and_label_rules(tmp_path):
    path = _write(tmp_path, "a.fa", FASTA)
    examples, report = read_fasta(path, label_from=last_field())
    assert examples == [TextExample("ACGTACGTNA", "promoter"), TextExample("TTTT", "other")]
    assert report.skipped == 0
    by_regex, _ = read_fasta(path, label_from=r"chr(\d)")
    assert [e.label for e in by_regex] == ["1", "2"]
    named, _ = read_fasta(path, label_from=r"(seq\d) chr(?P<label>\d)")
    assert [e.label for e in named] == ["1", "2"]
    by_function, _ = read_fasta(path, label_from=lambda header: header.split()[0])
    assert [e.label for e in by_function] == ["seq1", "seq2"]
    unlabelled, _ = read_fasta(path)
    assert [e.label for e in unlabelled] == ["", ""]


@pytest.mark.parametrize(
    "text, line, expected",
    [
        (">a|x\nACGT\nACXT\n", 3, "character 'X' at position 3; expected a base"),
        ("ACGT\n>a|x\nACGT\n", 1, "sequence line before the first '>' header"),
        (">a|x\n>b|y\nACGT\n", 1, "header 'a|x' has no sequence lines"),
    ],
)
def test_fasta_errors_name_file_and_line(tmp_path, text, line, expected):
    path = _write(tmp_path, "bad.fa", text)
    with pytest.raises(UserError) as error:
        read_fasta(path, label_from=last_field())
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: ") and expected in message, message
    assert "\n" not in message


def test_fasta_label_pattern_mismatch_and_skip_bad(tmp_path):
    path = _write(
        tmp_path, "mixed.fa", ">a label=1\nACGT\n>b\nAC\n>c label=0\nAZ\n>d label=0\nGG\n"
    )
    with pytest.raises(UserError, match=rf"^{path}:3: header 'b' does not match"):
        read_fasta(path, label_from=r"label=(\d)")
    examples, report = read_fasta(path, label_from=r"label=(\d)", skip_bad=True)
    assert examples == [TextExample("ACGT", "1"), TextExample("GG", "0")]
    assert report.skipped == 2
    assert report.reasons == {"no label in header": 1, "not a base": 1}


def test_sequence_csv_reads_gue_format_and_reports_bad_rows(tmp_path):
    path = _write(tmp_path, "dev.csv", "sequence,label\nACGTN,1\n  acgt ,0\n")
    examples, _ = read_sequence_csv(path)
    assert examples == [TextExample("ACGTN", "1"), TextExample("ACGT", "0")]
    bad = _write(tmp_path, "bad.csv", "sequence,label\nACGT,1\nAC-T,0\nACGT\n")
    with pytest.raises(UserError, match=rf"^{bad}:3: character '-' at position 3"):
        read_sequence_csv(bad)
    examples, report = read_sequence_csv(bad, skip_bad=True)
    assert len(examples) == 1 and report.reasons == {"not a base": 1, "wrong column count": 1}
    no_column = _write(tmp_path, "cols.csv", "seq,label\nACGT,1\n")
    with pytest.raises(UserError, match=rf"^{no_column}:1: no column 'sequence'"):
        read_sequence_csv(no_column)


def test_uci_format_with_padding_and_tabs(tmp_path):
    path = _write(
        tmp_path,
        "uci.data",
        "EI,    ATRINS-DONOR-521,               CCAGNDRS\n+,S10,\t\ttactagca\n\n",
    )
    examples, _ = read_uci_sequences(path)
    assert examples == [TextExample("CCAGNDRS", "EI"), TextExample("TACTAGCA", "+")]
    bad = _write(tmp_path, "bad.data", "EI, X, ACGT\nEI, ACGT\n")
    with pytest.raises(UserError, match=rf"^{bad}:2: 2 comma-separated fields; expected 'class"):
        read_uci_sequences(bad)


def test_alphabet_orders_acgt_first_and_rejects_non_bases():
    assert alphabet(["ttgs", "CAN", "DRA"]) == "ACGTNDRS"
    with pytest.raises(UserError, match="character 'Z'"):
        alphabet(["ACZ"])


# ----------------------------------------------------------------------------------- splits


def test_paper_split_sizes_and_order_follow_their_code():
    split = paper_split(3190)
    assert {name: len(indices) for name, indices in split.items()} == {
        "train": 2871,
        "dev": 159,
        "test": 160,
    }
    # their preprocess: random.seed(100); random.shuffle(examples); finetune.py/evaluate.py cut
    # at int(n * 0.9) and int(n * 0.95)
    state = random.getstate()
    try:
        random.seed(100)
        shuffled = list(range(3190))
        random.shuffle(shuffled)
    finally:
        random.setstate(state)
    assert split["train"] + split["dev"] + split["test"] == shuffled
    assert split["train"] == shuffled[: int(3190 * 0.9)]
    assert paper_split(3190) == split
    assert paper_split(3190, seed=101) != split
    assert {name: len(part) for name, part in paper_split(106).items()} == {
        "train": 95,
        "dev": 5,
        "test": 6,
    }
    assert apply_split("abcd", {"x": [3, 0]}) == {"x": ["d", "a"]}


@pytest.mark.parametrize("n, k", [(23, 5), (10, 10), (7, 2)])
def test_kfold_puts_every_example_in_exactly_one_test_fold(n, k):
    folds = kfold(n, k, seed=3)
    assert len(folds) == k
    tests = [i for fold in folds for i in fold.test]
    assert sorted(tests) == list(range(n))
    sizes = [len(fold.test) for fold in folds]
    assert max(sizes) - min(sizes) <= 1
    for fold in folds:
        assert sorted(fold.train + fold.test) == list(range(n))
    assert kfold(n, k, seed=3) == folds
    with pytest.raises(ValueError):
        kfold(3, 4)


# ---------------------------------------------------------------------------------- mapping

# A BERT-like vocabulary: [PAD], [unused] slots, the specials, letters, words and word pieces.
VOCAB = (
    ["[PAD]"]
    + [f"[unused{i}]" for i in range(10)]
    + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>"]
    + list("acgtnACGT")
    + [f"word{i}" for i in range(60)]
    + [f"##piece{i}" for i in range(20)]
)
NOT_DRAWABLE = set(range(16))  # [PAD], [unused0-9], [UNK], [CLS], [SEP], [MASK], <s>


def test_random_mapping_draws_distinct_ordinary_tokens():
    mapping = BaseVocabularyMapping.random(VOCAB, seed=100, bases="ACGTNDRS")
    assert list(mapping.ids) == ["[CLS]", "[SEP]", "A", "C", "G", "T", "N", "D", "R", "S"]
    ids = list(mapping.ids.values())
    assert len(set(ids)) == len(ids)
    assert not set(ids) & NOT_DRAWABLE
    assert all(mapping.tokens[s] == VOCAB[i] for s, i in mapping.ids.items())
    assert mapping.pad_id == 0 and mapping.vocab_size == len(VOCAB)
    assert set(drawable_ids(VOCAB)) == set(range(len(VOCAB))) - NOT_DRAWABLE
    assert min(drawable_ids(VOCAB, min_id=50)) == 50


def test_random_mapping_is_deterministic_seed_dependent_and_prefix_stable():
    first = BaseVocabularyMapping.random(VOCAB, seed=100)
    assert BaseVocabularyMapping.random(VOCAB, seed=100) == first
    assert BaseVocabularyMapping.random(VOCAB, seed=101).ids != first.ids
    # A C G T keep their tokens when the data also has ambiguity letters
    wider = BaseVocabularyMapping.random(VOCAB, seed=100, bases="TGCASN")
    assert {b: wider.ids[b] for b in first.ids} == first.ids
    own = BaseVocabularyMapping.random(VOCAB, seed=100, map_special=False)
    assert own.ids["[CLS]"] == VOCAB.index("[CLS]") and own.ids["[SEP]"] == VOCAB.index("[SEP]")
    assert {b: own.ids[b] for b in "ACGT"} == {b: first.ids[b] for b in "ACGT"}
    with pytest.raises(UserError, match="expected at least 6"):
        BaseVocabularyMapping.random(VOCAB[:20], seed=0)


def test_mapping_encode_truncates_and_rejects_unmapped_bases():
    mapping = BaseVocabularyMapping.random(VOCAB, seed=7)
    ids = mapping.ids
    assert mapping.encode("acgT") == [
        ids["[CLS]"],
        ids["A"],
        ids["C"],
        ids["G"],
        ids["T"],
        ids["[SEP]"],
    ]
    assert mapping.encode("ACGTACGT", max_length=4) == [
        ids["[CLS]"],
        ids["A"],
        ids["C"],
        ids["[SEP]"],
    ]
    with pytest.raises(UserError, match="base 'N' is not in the mapping"):
        mapping.encode("ACN")


def test_mapping_json_round_trip_and_vocabulary_check():
    mapping = BaseVocabularyMapping.random(VOCAB, seed=100, bases="ACGTN")
    data = json.loads(json.dumps(mapping.to_json()))
    assert BaseVocabularyMapping.from_json(data, VOCAB) == mapping
    other = list(VOCAB)
    other[mapping.ids["A"]] = "changed"
    with pytest.raises(UserError, match="A is id .*expected the vocabulary it was made for"):
        BaseVocabularyMapping.from_json(data, other)
    with pytest.raises(UserError, match="version"):
        BaseVocabularyMapping.from_json({"mode": "random"})


def test_letters_and_chars_modes(tmp_path):
    letters = BaseVocabularyMapping.letters(VOCAB, "ACGTN")
    assert letters.tokens == {
        "[CLS]": "[CLS]",
        "[SEP]": "[SEP]",
        "A": "a",
        "C": "c",
        "G": "g",
        "T": "t",
        "N": "n",
    }
    with pytest.raises(UserError, match="neither 'r' nor 'R'"):
        BaseVocabularyMapping.letters(VOCAB, "ACGTR")
    # a BERT vocab.txt as a selfsup tokenizer, and a character tokenizer trained on DNA-ish text
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    bert = Tokenizer.from_vocab_file(tmp_path / "vocab.txt")
    assert BaseVocabularyMapping.letters(bert, "ACGTN").ids == letters.ids
    assert BaseVocabularyMapping.random(bert, seed=3) == BaseVocabularyMapping.random(VOCAB, 3)
    chars = train_tokenizer("char", ["GATTACA", "CAT GCA"], vocab_size=30, min_frequency=1)
    mapping = BaseVocabularyMapping.build("chars", chars)
    assert {b: chars.id_to_token(mapping.ids[b]) for b in "ACGT"} == {b: b for b in "ACGT"}
    assert mapping.encode("GAT")[0] == chars.cls_id
    with pytest.raises(UserError, match="expected one known token"):
        BaseVocabularyMapping.chars(chars, "ACGTN")


# --------------------------------------------------------------------------------- baseline


def test_kmer_features_known_values():
    features = kmer_features(["ACGT", "AACN"], k_max=2)
    assert features.shape == (2, 4 + 16)
    assert features[0, :4].tolist() == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert features[1, :4].tolist() == pytest.approx([2 / 3, 1 / 3, 0.0, 0.0])  # N is left out
    # 2-mers of AACN: AA and AC (CN is left out); index = 4 * first + second
    assert features[1, 4 + 0].item() == 0.5 and features[1, 4 + 1].item() == 0.5
    positional = kmer_features(["AC", "G"], k_max=1, positional=True)
    assert positional[:, 4:].tolist() == [[1, 0, 0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]]


def _tata_task(count: int, rng: random.Random) -> list[TextExample]:
    """Label "1" when TATA is in the sequence. Negatives hold a decoy with the same letters (ATTA)
    so that base composition (k = 1) says nothing about the label."""
    examples = []
    while len(examples) < count:
        positive = len(examples) % 2 == 0
        sequence = [rng.choice("ACGT") for _ in range(40)]
        start = rng.randrange(37)
        sequence[start : start + 4] = "TATA" if positive else "ATTA"
        text = "".join(sequence)
        if ("TATA" in text) == positive and text.count("TATA") <= 1:
            examples.append(TextExample(text, "1" if positive else "0"))
    return examples


def test_kmer_baseline_finds_a_motif_that_composition_cannot():
    rng = random.Random(0)
    train, dev, test = _tata_task(400, rng), _tata_task(100, rng), _tata_task(200, rng)
    four = kmer_baseline(train, dev, test, k_max=4)
    assert four.test_accuracy >= 0.95, four
    assert four.penalty in four.dev_accuracy and four.labels == ["0", "1"]
    one = kmer_baseline(train, dev, test, k_max=1)
    assert one.test_accuracy <= 0.65, one


def test_kmer_cross_validation_scores_every_example_once():
    examples = _tata_task(160, random.Random(1))
    result = kmer_cross_validation(
        examples, kfold(160, 4), k_max=4, penalties=(0.1, 0.01), inner_folds=2
    )
    assert result.total == 160 and len(result.penalties) == 4
    assert result.accuracy >= 0.9, result


# ------------------------------------------------------------------------------ shared data


def test_splice_as_kao_and_lee_read_it():
    folder = _need(DATA / "dna-splice")
    examples = load_splice(folder)
    assert len(examples) == 3190 and {len(e.text) for e in examples} == {60}
    assert sorted({e.label for e in examples}) == ["EI", "IE", "N"]
    assert [e.label for e in examples].count("N") == 1655
    assert alphabet(e.text for e in examples) == "ACGTNDRS"
    parts = apply_split(examples, paper_split(len(examples)))
    assert {name: len(part) for name, part in parts.items()} == {
        "train": 2871,
        "dev": 159,
        "test": 160,
    }
    # the derived splice.csv holds the same rows in the same order
    csv_examples, _ = read_sequence_csv(folder / "splice.csv")
    assert csv_examples == examples
    mapping = BaseVocabularyMapping.random(VOCAB, 100, alphabet(e.text for e in examples))
    assert len(mapping.encode(examples[0].text, max_length=62)) == 62


def test_promoters_and_gue():
    promoters = load_promoters(_need(DATA / "dna-promoters"))
    assert len(promoters) == 106 and {len(e.text) for e in promoters} == {57}
    assert [e.label for e in promoters].count("+") == 53
    assert promoters[0].text.startswith("TACTAGCAATACG")
    gue = _need(DATA / "dna-gue")
    dev = load_gue(gue_task_dir("prom/prom_core_tata", gue), "dev")
    assert len(dev) == 613 and {len(e.text) for e in dev} == {70}
    with pytest.raises(UserError, match="no EMP train files"):
        load_gue(gue_task_dir("EMP/H3", gue), "train")
    with pytest.raises(UserError, match="expected one of train, dev, test"):
        load_gue(gue_task_dir("EMP/H3", gue), "valid")


# --- fine-tuning on sequences (task.sequence_mapping) ------------------------------------------


def _char_tokenizer() -> Tokenizer:
    return train_tokenizer("char", ["ACGT acgt 中文"], vocab_size=100, min_frequency=1)


def test_mapped_tokenizer_reads_a_text_as_bases_around_the_mappings_cls_and_sep():
    tokenizer = _char_tokenizer()
    mapping = BaseVocabularyMapping.random(tokenizer, seed=7)
    mapped = MappedSequenceTokenizer(tokenizer, mapping)
    assert mapped.encode_batch(["ACGTA", "tt"])[0].ids == [mapping.ids[b] for b in "ACGTA"]
    assert mapped.encode_batch(["tt"])[0].ids == [mapping.ids["T"]] * 2  # lower case read too
    assert (mapped.cls_id, mapped.sep_id) == (mapping.ids["[CLS]"], mapping.ids["[SEP]"])
    assert mapped.pad_id == tokenizer.pad_id and mapped.vocab_size == tokenizer.vocab_size


def _tiny_run(folder: Path) -> Path:
    from selfsup.config import apply_overrides
    from selfsup.recipes import pretrain
    from selfsup.recipes.text import preset_tiny

    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(["ACGT 我们要坚持改革开放。", "北京是中国的首都。"] * 10) + "\n")
    cfg = apply_overrides(preset_tiny(), [f"data.corpus={corpus}", "train.steps=1"])
    cfg.train.eval_every, cfg.train.progress = 0, False
    pretrain(cfg, folder / "run")
    return folder / "run"


def test_finetune_reads_fasta_files_with_a_base_mapping_and_records_it(tmp_path, capsys):
    from selfsup.cli import main

    run = _tiny_run(tmp_path)
    lines = [
        f">seq{i}|{'promoter' if i % 2 else 'other'}\n{'ACGT' * 3 if i % 2 else 'TTGA' * 3}"
        for i in range(40)
    ]
    fasta = tmp_path / "train.fasta"
    fasta.write_text("\n".join(lines) + "\n")
    args = ["finetune", "--init", str(run), "--task", "files", "--out", str(tmp_path / "ft")]
    args += [f"task.train_file={fasta}", "task.kind=classification", "task.max_seq_len=16"]
    args += ["task.sequence_mapping=random", "task.mapping_seed=3", "train.steps=2"]
    args += ["train.progress=false", "train.batch_size=8"]
    assert main(args) == 0
    recorded = json.loads((tmp_path / "ft" / "sequence_mapping.json").read_text())
    assert recorded["seed"] == 3 and set(recorded["ids"]) == {"[CLS]", "[SEP]", *"ACGT"}
    labels = json.loads((tmp_path / "ft" / "labels.json").read_text())
    assert sorted(labels["labels"]) == ["other", "promoter"]


def test_a_sequence_mapping_on_a_tagging_task_is_one_line(tmp_path, capsys):
    from selfsup.cli import main

    run = _tiny_run(tmp_path)
    tagged = tmp_path / "train.txt"
    tagged.write_text("A B-X\nC O\n\nG O\nT B-X\n\n" * 5)
    args = ["finetune", "--init", str(run), "--task", "files", "--out", str(tmp_path / "ft")]
    args += [f"task.train_file={tagged}", "task.kind=tagging", "task.sequence_mapping=chars"]
    args += ["task.max_seq_len=16"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "task.sequence_mapping" in err and "expected classification" in err
