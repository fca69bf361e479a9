"""Which labelled data a run reads (`LabelledDataConfig`, the `task.*` keys of `selfsup finetune` and
`selfsup icl`), free of torch and numpy so that building a command's flags imports neither; the
tasks themselves are selfsup/data/catalog.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selfsup.config import option


@dataclass
class LabelledDataConfig:
    """Which labelled data a run reads: a built-in task, or files (`name=files`) with the fields
    to read; fine-tuning's task config adds its model-side options to these."""

    name: str = option(
        "sentiment",
        "a built-in task (sentiment, seg, pos, ner; from ../shared/data: chnsenticorp, waimai, "
        "ocnli, msra-ner, peoples-daily-ner, weibo-ner, sst2, wnut17, drcd, squad-dev, "
        "dna-splice) or 'files'",
    )
    kind: Literal["auto", "classification", "pair", "tagging", "qa"] = option(
        "auto", "task kind; auto = the built-in task's own (required with name=files)"
    )
    train_file: str | None = option(
        None,
        "training data (name=files): CSV/TSV/JSONL, FASTA (.fa/.fasta, label = the header's last "
        "|-separated field), CoNLL/BIO, SQuAD JSON",
    )
    dev_file: str | None = option(None, "development data (name=files); default: 10% of train")
    test_file: str | None = option(None, "test data (name=files); default: the dev data")
    text_field: str = option("text", "column/field holding the text (classification, pair)")
    text_b_field: str | None = option(None, "column/field holding the second text (pair)")
    label_field: str = option("label", "column/field holding the label")
    skip_bad: bool = option(False, "skip (and count) bad records instead of stopping with an error")
    max_train_examples: int = option(0, "use only the first N training examples (0: all)")
    max_eval_examples: int = option(0, "evaluate on the first N dev/test examples (0: all)")
