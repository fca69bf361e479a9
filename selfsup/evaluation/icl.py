"""`selfsup icl`: in-context learning of a labelled classification task by a GPT run, measured
with no parameter update (Brown et al. 2020, "Language Models are Few-Shot Learners").

Shape legend: Q queries in a batch, L their longest continuation, P prefix tokens, V vocabulary.

A k-shot prompt is k demonstrations drawn at random from the training split, each written with a
template ("{text} -> {label}"), one per line, followed by the test text written the same way up
to the label. Every candidate label is scored by the log-probability the model gives its tokens
after the prompt (summed, or averaged per token), and the best one is the prediction. Accuracy is
reported for each k over several random draws of the demonstrations, next to the majority-class
baseline (always the most frequent training label), which a model that learnt nothing from its
prompt can still reach.

Contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): a small or half-trained model
often prefers one label word whatever the text says (the word is frequent, or it ended the last
demonstration). The same prompt is therefore also read with content-free test inputs ("N/A",
"[MASK]", the empty text); their average label distribution is the model's bias under this prompt,
and each test example's label probabilities are divided by it before the argmax. Both accuracies
are reported; calibration costs three extra queries per prompt and no parameter update.

Cost: the demonstrations are the same for every test example of a draw, so they are read once and
their keys and values are kept (the generation key-value cache); each test example then costs
only its own tokens and its candidates. Texts are cut to `max_text_chars` characters; if the
prompt still does not fit the model's position table, the oldest demonstrations are dropped and
the table says how many were used on average.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.data.catalog import load_task_data
from selfsup.data.clm import encode_text
from selfsup.data.labelled import TextExample
from selfsup.data.splits import seeded_subset
from selfsup.errors import UserError
from selfsup.evaluation.icl_config import ICLConfig
from selfsup.inference.generate import load_gpt
from selfsup.io import atomic_write_json
from selfsup.models.gpt import new_caches
from selfsup.models.transformer import KVCache
from selfsup.reporting import markdown_table, mean_std, pyplot, save_figure


def parse_label_words(spec: str, labels: list[str]) -> dict[str, str]:
    """'pos=好,neg=差' -> {"pos": "好", "neg": "差"}; each label is its own word if spec is empty."""
    if not spec:
        return {label: label for label in labels}
    words = {}
    for item in spec.split(","):
        if "=" not in item:
            raise UserError(f"labels: {item!r} is not label=word (e.g. 'pos=好,neg=差')")
        label, word = (part.strip() for part in item.split("=", 1))
        words[label] = word
    missing = [label for label in labels if label not in words]
    if missing or len(set(words.values())) < len(words):
        raise UserError(
            f"labels: need one distinct word for each of {', '.join(labels)} "
            f"(missing: {', '.join(missing) or 'none'})"
        )
    return {label: words[label] for label in labels}


# ---------------------------------------------------------------- prompts
def _cut(text: str, max_chars: int) -> str:
    return text[:max_chars] if max_chars > 0 else text


def render(template: str, example, max_chars: int) -> tuple[str, str]:
    """(the example up to its label, what follows the label's position up to the label itself):
    '{text} -> {label}' gives ('text ->', ' ') so the space goes with the label word."""
    before = template.split("{label}")[0]
    filled = before.replace("{text}", _cut(example.text, max_chars)).replace(
        "{text_b}", _cut(example.text_b or "", max_chars)
    )
    stripped = filled.rstrip()
    return stripped, filled[len(stripped) :]


def demonstration(template: str, example, word: str, max_chars: int) -> str:
    query, gap = render(template, example, max_chars)
    return query + gap + word


# ---------------------------------------------------------------- scoring
def _expanded(caches, batch: int):
    """Fresh caches holding the prefix's keys and values for every row of a batch."""
    out = []
    for cache in caches:
        fresh = KVCache()
        fresh.k = cache.k.expand(batch, -1, -1, -1)
        fresh.v = cache.v.expand(batch, -1, -1, -1)
        out.append(fresh)
    return out


@torch.no_grad()
def continuation_logprobs(
    model,
    prefix_ids: list[int],
    queries: list[list[int]],
    candidates: list[list[int]],
    batch_size: int = 32,
) -> np.ndarray:
    """(Q, C) summed log-probabilities of each candidate's tokens after prefix + query.

    The prefix is read once into a key-value cache that every query continues; queries must be
    non-empty (the candidate's first token is then predicted from the query's last position).
    """
    device = next(model.parameters()).device
    caches = new_caches(model.decoder.config)
    model.logits(torch.tensor([prefix_ids], device=device), caches)
    rows = [(q, c) for q in range(len(queries)) for c in range(len(candidates))]
    out = np.zeros((len(queries), len(candidates)))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs = [queries[q] + candidates[c] for q, c in chunk]
        width = max(map(len, seqs))
        ids = torch.zeros((len(seqs), width), dtype=torch.long)  # right-padded: causal attention
        for r, seq in enumerate(seqs):  # never lets a pad change an earlier position
            ids[r, : len(seq)] = torch.tensor(seq)
        logp = model.logits(ids.to(device), _expanded(caches, len(seqs))).float().log_softmax(-1)
        for r, (q, c) in enumerate(chunk):
            first, n = len(queries[q]), len(candidates[c])
            positions = torch.arange(first - 1, first - 1 + n)
            targets = torch.tensor(candidates[c])
            out[q, c] = float(logp[r, positions, targets].sum())
    return out


def label_distribution(scores: np.ndarray) -> np.ndarray:
    """(N, C) label log-scores -> (N, C) probabilities normalised over the candidate labels."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    return p / p.sum(axis=1, keepdims=True)


def calibrated_scores(scores: np.ndarray, content_free_scores: np.ndarray) -> np.ndarray:
    """Contextual calibration: log p(label | x) - log p_cf(label), where p_cf is the label
    distribution averaged over the content-free inputs (each normalised over the labels first).
    Under these scores every content-free input itself gets the uniform distribution."""
    bias = label_distribution(content_free_scores).mean(axis=0)
    return np.log(label_distribution(scores)) - np.log(bias)[None]


def _top_share(predicted: list[str]) -> float:
    return collections.Counter(predicted).most_common(1)[0][1] / len(predicted)


@dataclass
class DrawResult:
    shots: int
    draw: int
    accuracy: float
    demos_used: int
    most_predicted_share: float  # share of the most frequent prediction: 1.0 = one label always
    calibrated_accuracy: float | None = None
    calibrated_share: float | None = None


def evaluate_draw(
    run, cfg: ICLConfig, demos: list, tests: list, words: dict[str, str], shots: int, draw: int
) -> DrawResult:
    """Accuracy of one k-shot prompt (one draw of demonstrations) on the test examples."""
    tok = run.tokenizer
    labels = list(words)
    rendered = [render(cfg.template, e, cfg.max_text_chars) for e in tests]
    queries = [encode_text(tok, text, bos=False) for text, _ in rendered]
    gap = rendered[0][1] if rendered else " "
    candidates = [tok.encode(gap + words[label]).ids for label in labels]
    if any(not c for c in candidates) or any(not q for q in queries):
        raise UserError("a label word or a test text encodes to no tokens with this tokenizer")
    content_free = []
    if cfg.calibrate:
        for text in [*cfg.content_free, ""]:
            blank = TextExample(text, labels[0], text if tests and tests[0].text_b else None)
            ids = encode_text(tok, render(cfg.template, blank, 0)[0], bos=False)
            content_free += [ids] if ids else []  # a template with nothing around {text}
    longest = max(map(len, queries + content_free)) + max(map(len, candidates))
    limit = run.model.decoder.config.max_position
    used = list(demos)
    while True:
        lines = [demonstration(cfg.template, e, words[e.label], cfg.max_text_chars) for e in used]
        prefix = encode_text(tok, "".join(line + "\n" for line in lines))
        if len(prefix) + longest <= limit or not used:
            break
        used = used[1:]  # the oldest demonstration goes first
    if len(prefix) + longest > limit:
        raise UserError(
            f"a test example needs {longest} tokens after the prompt; the model reads at most "
            f"{limit}: lower max_text_chars"
        )
    scores = continuation_logprobs(
        run.model, prefix, queries + content_free, candidates, cfg.batch_size
    )
    if cfg.score == "mean":
        scores = scores / np.array([len(c) for c in candidates])[None]
    scores, content_free_scores = scores[: len(queries)], scores[len(queries) :]

    def accuracy_and_share(label_scores: np.ndarray) -> tuple[float, float]:
        predicted = [labels[i] for i in label_scores.argmax(1)]
        correct = np.mean([p == e.label for p, e in zip(predicted, tests)])
        return float(correct), _top_share(predicted)

    accuracy, share = accuracy_and_share(scores)
    result = DrawResult(shots, draw, accuracy, len(used), share)
    if len(content_free_scores):
        calibrated = calibrated_scores(scores, content_free_scores)
        result.calibrated_accuracy, result.calibrated_share = accuracy_and_share(calibrated)
    return result


@dataclass
class ICLReport:
    task: str
    labels: dict[str, str]
    majority_label: str
    majority_accuracy: float
    num_test: int
    draws: list[DrawResult]
    split: str = "test"

    def rows(self) -> list[dict]:
        """One row per k: mean, std, min and max accuracy over draws."""
        out = []
        for k in sorted({d.shots for d in self.draws}):
            ds = [d for d in self.draws if d.shots == k]
            acc = np.array([d.accuracy for d in ds])
            out.append(
                {
                    "k": k,
                    "draws": len(ds),
                    "accuracy_mean": float(acc.mean()),
                    "accuracy_std": float(acc.std()),
                    "accuracy_min": float(acc.min()),
                    "accuracy_max": float(acc.max()),
                    "demos_used": float(np.mean([d.demos_used for d in ds])),
                    "most_predicted_share": float(np.mean([d.most_predicted_share for d in ds])),
                }
            )
            if all(d.calibrated_accuracy is not None for d in ds):
                calibrated = np.array([d.calibrated_accuracy for d in ds])
                out[-1]["calibrated_mean"] = float(calibrated.mean())
                out[-1]["calibrated_std"] = float(calibrated.std())
                out[-1]["calibrated_share"] = float(np.mean([d.calibrated_share for d in ds]))
        return out

    def table(self) -> str:
        rows = self.rows()
        calibrated = all("calibrated_mean" in r for r in rows)
        table = []
        for r in rows:
            table.append(
                [
                    r["k"],
                    f"{r['demos_used']:.1f}",
                    mean_std(r["accuracy_mean"], r["accuracy_std"]),
                    f"{r['accuracy_min']:.3f} .. {r['accuracy_max']:.3f}",
                    r["most_predicted_share"],
                ]
            )
            if calibrated:
                table[-1] += [
                    mean_std(r["calibrated_mean"], r["calibrated_std"]),
                    r["calibrated_share"],
                ]
        header = ["k", "demos used", "accuracy (mean +- std)", "min .. max", "top label share"]
        if calibrated:
            header += ["calibrated accuracy", "calibrated top share"]
        return (
            markdown_table(header, table)
            + f"\nmajority-class baseline (always {self.majority_label!r}): "
            f"{self.majority_accuracy:.3f} on {self.num_test} {self.split} examples"
        )


def plot_icl_curve(report: ICLReport, path: Path, title: str) -> None:
    plt = pyplot()
    rows = report.rows()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ks = [r["k"] for r in rows]
    positions = np.arange(len(ks))  # k = 0, 1, 2, 4, ... evenly spaced
    for d in report.draws:
        ax.plot(positions[ks.index(d.shots)], d.accuracy, ".", color="tab:blue", alpha=0.35)
    series = [("accuracy", "o-", "tab:blue", "GPT, mean +- std over draws")]
    if all("calibrated_mean" in r for r in rows):
        series.append(("calibrated", "s--", "tab:orange", "GPT, contextually calibrated"))
    for shift, (key, fmt, color, label) in enumerate(series):
        ax.errorbar(
            positions + 0.06 * shift,  # side by side where the two overlap
            [r[f"{key}_mean"] for r in rows],
            yerr=[r[f"{key}_std"] for r in rows],
            fmt=fmt,
            color=color,
            capsize=3,
            label=label,
        )
    ax.axhline(report.majority_accuracy, color="grey", ls="--", label="majority class")
    ax.set_xticks(positions, [str(k) for k in ks])
    ax.set(xlabel="demonstrations in the prompt (k)", ylabel="accuracy", title=title)
    ax.set_ylim(0, 1)  # the whole scale: differences of a few points look like what they are
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
    plt.close(fig)


def run_icl(run_dir: str | Path, cfg: ICLConfig, out: Path | None = None, say=print) -> ICLReport:
    """Evaluate a GPT run in context for every k and draw; print and (with `out`) save the table,
    results.json and icl_curve.png."""
    cfg.validate()
    run = load_gpt(str(run_dir))
    if cfg.task.kind not in ("auto", "classification", "pair"):
        raise UserError(f"task.kind={cfg.task.kind}: icl needs classification or pair")
    data = load_task_data(cfg.task)
    if data.kind not in ("classification", "pair"):
        raise UserError(
            f"task {data.name!r} is a {data.kind} task; icl needs classification or pair"
        )
    pool = data.splits["train"]
    split = data.eval_split if cfg.split == "test" else "dev"
    if split not in data.splits:
        raise UserError(f"split=dev: task {data.name!r} has no dev split (give --task.dev_file)")
    tests = seeded_subset(data.splits[split], cfg.task.max_eval_examples)
    labels = sorted({e.label for e in pool})
    words = parse_label_words(cfg.labels, labels)
    majority = collections.Counter(e.label for e in pool).most_common(1)[0][0]
    majority_accuracy = float(np.mean([e.label == majority for e in tests]))
    draws = []
    for k in cfg.shots:
        if k > len(pool):
            raise UserError(f"shots: k={k} is more than the {len(pool)} training examples")
        for draw in range(cfg.draws if k > 0 else 1):
            rng = np.random.default_rng([cfg.seed, k, draw])
            demos = [pool[i] for i in rng.choice(len(pool), k, replace=False)]
            result = evaluate_draw(run, cfg, demos, tests, words, k, draw)
            calibrated = (
                f", calibrated {result.calibrated_accuracy:.3f}"
                if result.calibrated_accuracy is not None
                else ""
            )
            say(
                f"k={k} draw {draw}: accuracy {result.accuracy:.3f}{calibrated} "
                f"({result.demos_used} demos)"
            )
            draws.append(result)
    report = ICLReport(data.name, words, majority, majority_accuracy, len(tests), draws, split)
    say(report.table())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            out / "results.json",
            {
                "run": str(run_dir),
                "task": data.name,
                "labels": words,
                "template": cfg.template,
                "split": split,
                "majority_label": majority,
                "majority_accuracy": majority_accuracy,
                "num_test": len(tests),
                "rows": report.rows(),
                "draws": [d.__dict__ for d in draws],
            },
        )
        (out / "table.md").write_text(report.table() + "\n")
        plot_icl_curve(report, out / "icl_curve.png", f"in-context learning: {data.name}")
        say(f"plot: {out / 'icl_curve.png'}")
    return report
