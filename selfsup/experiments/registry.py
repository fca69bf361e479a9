"""The built-in experiments behind `selfsup experiment NAME`: one entry per claim of the lecture
that selfsup measures, with what it compares, what it costs and the published result it is read
against. Listing them imports nothing heavy; running one imports its torch-free X_config module
and calls its `main(argv)`, which parses the rest of the command line (`--out`, `--preset`,
`--quick`, ...), so `--help` and a bad flag cost no torch, then imports the experiment and runs it."""

from __future__ import annotations

import importlib
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str  # what the experiment measures, in one line
    module: str  # selfsup.experiments.X_config, torch-free: its main(argv) reads the flags, then
    # imports selfsup.experiments.X (torch) and runs it
    cpu_time: str  # the CPU preset's cost on 2 cores, as measured
    anchor: str  # the published result it is read against

    def main(self, argv: list[str]) -> int:
        return importlib.import_module(self.module).main(
            argv, prog=f"selfsup experiment {self.name}"
        )


EXPERIMENTS = {
    e.name: e
    for e in [
        Experiment(
            "pretrained-vs-scratch",
            "pretrained BERT vs random init on sentiment and NER, and with 50-1,000 labels",
            "selfsup.experiments.demo_config",
            "15 min",
            "Devlin et al. 2019; the lecture: pretraining helps most with few labels",
        ),
        Experiment(
            "objectives",
            "MLM alone vs MLM+NSP vs MLM+SOP; [MASK] vs random vs 80/10/10; whole-word masking",
            "selfsup.experiments.objectives_config",
            "~19 min (38 CPU-minutes with jobs=2; 45 min wall on busy cores)",
            "RoBERTa (NSP does not help), ALBERT (SOP > NSP; NSP-trained at chance on SOP)",
        ),
        Experiment(
            "dna",
            "text-pretrained BERT fine-tuned on DNA (bases as words) vs random init vs k-mers",
            "selfsup.experiments.dna_config",
            "~25 min (49 CPU-minutes with jobs=2; 54 min wall on busy cores)",
            "Kao & Lee 2021: text-pretrained converges faster and beats random init",
        ),
        Experiment(
            "cross-lingual",
            "pretrained on Chinese + a disjoint fake Chinese: fine-tune in one, test in the other; "
            "multilingual-e5 QA from English to Chinese",
            "selfsup.experiments.cross_lingual_config",
            "17 min for the fake-language part; the qa part (parts=fake-language,qa) ~37 min more",
            "Hsu, Liu & Lee 2019: mBERT English->Chinese QA F1 78.8 vs 89.1; K et al. 2020",
        ),
        Experiment(
            "icl-linear",
            "a GPT learns linear functions in context: error vs number of examples",
            "selfsup.experiments.icl_linear_config",
            "13 min",
            "Garg et al. 2022: matches least squares at k >= d",
        ),
        Experiment(
            "icl-induction",
            "induction-style copying in context appears with 2 layers, not with 1",
            "selfsup.experiments.icl_induction_config",
            "22 min",
            "Olsson et al. 2022: induction heads need 2 layers",
        ),
        Experiment(
            "ssl-few-labels",
            "SimCLR and BYOL vs random init vs raw pixels with 1/5/10/all labels per class",
            "selfsup.experiments.ssl_few_labels_config",
            "11 min",
            "Chen et al. 2020, Grill et al. 2020: SSL features beat random init with few labels",
        ),
        Experiment(
            "speech",
            "TERA and APC vs random init vs log-mel: FSDD digits (unseen speaker) and speakers",
            "selfsup.experiments.speech_config",
            "13 min (measured: 6 runs of the fsdd preset at about 2 min, then the probes)",
            "Yang et al. 2021 (SUPERB): TERA and APC features beat log-mel on SID and KS",
        ),
    ]
}


def listing() -> str:
    """The table `selfsup experiment list` prints."""
    width = max(len(name) for name in EXPERIMENTS) + 2
    lines = []
    for e in EXPERIMENTS.values():
        lines.append(f"{e.name:<{width}}{e.claim}")
        about = f"CPU preset about {e.cpu_time} on 2 cores; anchor: {e.anchor}"
        lines += textwrap.wrap(about, 98, initial_indent=" " * width, subsequent_indent=" " * width)
    lines.append("")
    lines.append("run one:   selfsup experiment NAME [--out DIR] [--preset cpu|gpu] [--quick]")
    lines.append("its flags: selfsup experiment NAME --help")
    return "\n".join(lines)
