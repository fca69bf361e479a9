"""MLM learning parity: selfsup's BERT vs transformers' BertForMaskedLM, trained the same way.

The claim tested: selfsup's masked-LM pretraining learns as well as the reference implementation
people already trust. Both arms train the same network from the same start on the same data:

- the model: selfsup's `BertPretrainer` with MLM alone, post-LN and learned positions (the one
  configuration that maps 1:1 onto Hugging Face's BERT); transformers' `BertForMaskedLM` with
  the config `selfsup.interop.huggingface.config_to_hf` writes for it (sdpa attention, its
  default);
- the initial weights: selfsup's model is built (seeded), then its tensors are copied into the
  Hugging Face model through selfsup's own export mapping (`interop.convert.hf_state_from_run`:
  the fused q/k/v rows split into query, key and value; the tied decoder is restored by
  transformers from the word embeddings), and the copy is checked tensor by tensor;
- the data and masks: both read the very same selfsup micro-batches
  (`BertPretrainingBatches.batch(i)`: input ids, attention mask, token types, and `mlm_labels`
  given to transformers as `labels`); both are scored on the same held-out batches (BERT's 15%
  masks, `eval_batches`);
- the optimizer: AdamW with selfsup's parameter groups (`trainer.build_optimizer`: no weight
  decay on biases and LayerNorm), carried over to the Hugging Face parameter names by the same
  export mapping; selfsup's schedule (`trainer.lr_at`), gradient clipping, step count, dropout.

The selfsup arm is `selfsup.trainer.train`, the loop its users run (evaluations every
`--eval-every` steps, read back from its metrics.jsonl); the transformers arm is a minimal loop
written here that does what `train` does: set the learning rate, forward with `labels`, backward,
clip, step.

Why the two curves are not bit-identical, and how close they should be:
- float summation order. selfsup projects q, k and v with one fused (3C x C) matmul, transformers
  with three (C x C) ones; selfsup adds token + position + segment embeddings, transformers token
  + segment + position (about 40% of the embedding outputs then differ in their last bit); the
  gradient norm for clipping is summed over other tensors.
- dense vs sparse vocabulary projection. transformers computes logits at every position and a
  mean cross entropy over the masked ones; selfsup computes them only at the masked positions
  (`objectives/mlm.py`). The loss is the same function, but the matmuls have other shapes (other
  blocking, other summation order), and the gradient of the tied embedding matrix sums
  contributions from other rows (exact zeros in the dense version).
- these last-bit differences grow with training: Adam divides each gradient by its own running
  scale, so where a gradient is near Adam's eps its last-bit difference becomes a visible share
  of a step, and the next steps compound it.
Expected, and measured with the defaults (seed 0, 400 steps): the held-out losses agree to float32
resolution at step 0 (relative difference 0: per-token differences of ~1e-7 vanish in the sum),
stay within 1e-6 for the first ~150 steps and drift to 2.5e-5 by step 400, with both signs along
the way; held-out accuracies agree to 0.1 point throughout. Anything at the percent level
would point at a real difference (a mask, an initialisation, a schedule); the 2% verdict leaves
room for much longer runs, where the drift keeps growing.
With dropout (--dropout 0.1) the masks coincide too: both arms seed torch's generator alike and
draw from it in the same order (embeddings, attention probabilities inside PyTorch's SDPA,
attention output, feed-forward output), so the curves stay as close as without it
(measured: 30 steps with --dropout 0.1, held-out losses within 4e-8). A change of that order in
either library would make them differ as two seeds of one implementation do.

Output: the held-out MLM loss of both arms every --eval-every steps as a markdown table (with the
unigram guess for scale), the ratio of final losses and a verdict (selfsup's final held-out loss
no worse than transformers' within 2%), a PNG of both curves and a JSON of the raw numbers, in
--out.

Usage:
    python benchmarks/mlm_parity_transformers.py --out runs/mlm-parity      # ~4 min, one thread
    python benchmarks/mlm_parity_transformers.py --out runs/mlm-parity --seed 1
    python benchmarks/mlm_parity_transformers.py --out runs/mlm-parity --hidden-size 256 \\
        --num-layers 4 --num-heads 4 --max-seq-len 128 --batch-size 32 --steps 1000
    python benchmarks/mlm_parity_transformers.py --prepared runs/pd --out runs/mlm-parity
The first run prepares People's Daily (tokenizer + token stores, ~30 s) in OUT/prepared and
later runs reuse it; --prepared reads those of an existing pretraining run folder instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from selfsup.batch import IGNORE_INDEX
from selfsup.config import parse_flat_settings
from selfsup.data.token_store import TokenStore
from selfsup.data.tokenizer import Tokenizer
from selfsup.interop.convert import RunWeights, hf_state_from_run, split_run_state
from selfsup.interop.huggingface import config_to_hf
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.bert_pretraining import BertPretrainer
from selfsup.recipes.text import (
    PretrainConfig,
    bert_batches,
    build_tokenizer,
    prepare_data,
    preset_small,
)
from selfsup.reporting import markdown_table, pyplot, save_figure
from selfsup.trainer import TrainConfig, build_optimizer, evaluate, lr_at, to_device, train

VERDICT_TOLERANCE = 0.02  # selfsup's final held-out loss may exceed transformers' by this share


# ---------------------------------------------------------------- settings
@dataclass
class Settings:
    """Defaults: about 4 minutes on one thread for both arms together, and clearly past the
    unigram plateau (the held-out loss of the frequency-only guess, ~6.53 nats, where a short
    post-LN run sits for its first ~100 steps), so the curves compare learning, not a plateau.
    Chosen by short selfsup-only runs of 300 steps (held-out accuracy at the end): masking rate
    0.15 at lr 1e-3 or 2e-3 stayed within 1 point of the unigram guess (4.2%); 0.4 at lr 2e-3
    reached 8.4%; lr 3e-3 never left the plateau; packing gave no gain (7.5%)."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2  # 64-wide heads (see preset_tiny: 4 heads of 32 escaped the plateau later)
    max_seq_len: int = 64
    batch_size: int = 16
    masking_rate: float = 0.4  # training masks (see preset_small); held-out masks are BERT's 15%
    pack: bool = False  # whole sentences with padding: the attention masks are exercised too
    steps: int = 400
    lr: float = 2e-3
    warmup_steps: int = 40
    schedule: str = "linear"
    adam_beta2: float = 0.98
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dropout: float = 0.0  # both dropouts of both arms
    eval_every: int = 25
    eval_batches: int = 20
    seed: int = 0
    threads: int = 1
    out: str = "runs/mlm-parity"
    prepared: str = ""  # a run folder with tokenizer/ and data/ to read (default: OUT/prepared)


def pretrain_config(s: Settings, vocab_size: int) -> PretrainConfig:
    """selfsup's config for the run; the transformers arm reads its sizes and `train` too."""
    cfg = PretrainConfig(objectives=["mlm"])
    cfg.model = TransformerConfig(
        vocab_size=vocab_size,
        hidden_size=s.hidden_size,
        num_layers=s.num_layers,
        num_heads=s.num_heads,
        max_position=s.max_seq_len,
        position_encoding="learned",  # Hugging Face's BERT has a position table only
        norm_position="post",  # and post-LN only
        dropout=s.dropout,
        attention_dropout=s.dropout,
    )
    cfg.masking.rate = s.masking_rate
    cfg.data.max_seq_len = s.max_seq_len
    cfg.data.pack = s.pack
    cfg.train = TrainConfig(
        steps=s.steps,
        batch_size=s.batch_size,
        lr=s.lr,
        weight_decay=s.weight_decay,
        adam_beta2=s.adam_beta2,
        warmup_steps=s.warmup_steps,
        schedule=s.schedule,
        max_grad_norm=s.max_grad_norm,
        eval_every=s.eval_every,
        eval_batches=s.eval_batches,
        checkpoint_every=10**9,  # one checkpoint, at the end
        log_every=s.eval_every,
        seed=s.seed,
        device="cpu",
        threads=s.threads,
        progress=False,
    )
    cfg.validate()
    return cfg


# ---------------------------------------------------------------- data
def prepared_data(folder: Path) -> tuple[Tokenizer, TokenStore, TokenStore]:
    """People's Daily as `selfsup pretrain --preset small` prepares it (character tokenizer,
    2% of the documents held out): read from `folder`, built there first if absent."""
    stores = [folder / "data" / split / "meta.json" for split in ("train", "valid")]
    if (folder / "tokenizer" / "tokenizer.json").is_file() and all(p.is_file() for p in stores):
        tokenizer = Tokenizer.load(folder / "tokenizer")
        return tokenizer, *(TokenStore.open(p.parent) for p in stores)
    print(f"preparing People's Daily in {folder} (once, ~30 s)", flush=True)
    cfg = preset_small()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg, folder)
    train_store, valid_store = prepare_data(cfg, tokenizer, folder)
    return tokenizer, train_store, valid_store


def unigram_loss(train_store: TokenStore, eval_set: list[dict]) -> float:
    """Held-out cross entropy of the context-blind guess: the training split's token frequencies
    (add-one smoothed), on the held-out masked positions. A model on this value has learned only
    which characters are common: the plateau that short MLM runs must leave first."""
    counts = np.asarray(train_store.token_counts(), dtype=np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    labels = torch.cat([b["mlm_labels"][b["mlm_labels"] != IGNORE_INDEX] for b in eval_set])
    return float(-log_p[labels.numpy()].mean())


# ---------------------------------------------------------------- selfsup -> transformers
def hf_masked_lm(cfg: TransformerConfig, pad_id: int):
    """transformers' BertForMaskedLM with the config selfsup's export writes for `cfg`."""
    from transformers import BertConfig, BertForMaskedLM

    hf_config = BertConfig(**config_to_hf(cfg, ["BertForMaskedLM"], {"pad_token_id": pad_id}))
    return BertForMaskedLM(hf_config).train()


def hf_named_state(model: BertPretrainer) -> dict[str, torch.Tensor]:
    """selfsup's MLM pretrainer as Hugging Face BertForMaskedLM tensors, through selfsup's export
    mapping. The tensors are views of the model's own parameters (the fused q/k/v rows split
    into three), which `hf_decay_names` relies on."""
    encoder, heads = split_run_state(model.state_dict(), "pretraining", ["mlm"], None)
    architecture, state, _notes = hf_state_from_run(
        RunWeights(model.encoder.config, encoder, heads, {})
    )
    assert architecture == "BertForMaskedLM", architecture
    return state


def copy_into_hf(model: BertPretrainer, hf_model: nn.Module) -> None:
    """Load selfsup's weights into the Hugging Face model, then check every Hugging Face tensor
    equals its source exactly. Only the tied decoder may be absent from the copied state:
    transformers ties it to the word embeddings and `cls.predictions.bias`."""
    state = hf_named_state(model)
    result = hf_model.load_state_dict(state, strict=False)
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    if result.unexpected_keys or set(result.missing_keys) - tied:
        raise RuntimeError(
            f"weight copy: unexpected {result.unexpected_keys}, missing {result.missing_keys}"
        )
    hf_params = dict(hf_model.named_parameters())
    for name, tensor in state.items():
        if not torch.equal(hf_params[name], tensor):
            raise RuntimeError(f"weight copy: {name} differs after loading")
    decoder = hf_model.cls.predictions.decoder
    if decoder.weight is not hf_model.bert.embeddings.word_embeddings.weight:
        raise RuntimeError("transformers did not tie the MLM decoder to the word embeddings")


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def hf_decay_names(model: BertPretrainer, cfg: TrainConfig) -> dict[str, bool]:
    """Hugging Face parameter name -> whether selfsup's optimizer decays it. selfsup's groups
    come from `build_optimizer` itself; each Hugging Face tensor is traced back to the selfsup
    parameter whose storage it views (query, key and value all view the fused qkv)."""
    groups = build_optimizer(model, cfg).param_groups
    decays = {_storage(p): group["weight_decay"] > 0 for group in groups for p in group["params"]}
    return {name: decays[_storage(t)] for name, t in hf_named_state(model).items()}


def hf_optimizer(hf_model: nn.Module, decay: dict[str, bool], cfg: TrainConfig):
    """AdamW as `build_optimizer` makes it, over the Hugging Face parameters."""
    params = dict(hf_model.named_parameters())  # the tied decoder is listed once, as embeddings
    if set(params) != set(decay):
        raise RuntimeError(f"parameters without a selfsup twin: {set(params) ^ set(decay)}")
    groups = [
        {"params": [p for n, p in params.items() if decay[n]], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params.items() if not decay[n]], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))


def hf_inputs(batch: dict) -> dict[str, torch.Tensor]:
    """A selfsup batch as BertForMaskedLM's keyword arguments (mlm_labels -> labels)."""
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "token_type_ids": batch["token_type_ids"],
        "labels": batch["mlm_labels"],
    }


def hf_loss_sum(hf_model: nn.Module, batch: dict) -> tuple[torch.Tensor, int, int]:
    """(summed cross entropy over the masked positions, their count, top-1 correct): the sums
    selfsup's evaluation adds, computed from transformers' dense logits."""
    inputs = hf_inputs(batch)
    labels = inputs.pop("labels")
    logits = hf_model(**inputs).logits  # (B, T, V) at every position
    where = labels != IGNORE_INDEX
    loss_sum = nn.functional.cross_entropy(logits[where].float(), labels[where], reduction="sum")
    correct = int((logits[where].argmax(-1) == labels[where]).sum())
    return loss_sum, int(where.sum()), correct


@torch.no_grad()
def hf_evaluate(hf_model: nn.Module, batches: list[dict]) -> dict[str, float]:
    """Held-out loss and accuracy over all masked positions of `batches` (selfsup's weighting)."""
    was_training = hf_model.training
    hf_model.eval()
    total, count, correct = 0.0, 0, 0
    for batch in batches:
        loss_sum, n, c = hf_loss_sum(hf_model, batch)
        total, count, correct = total + float(loss_sum), count + n, correct + c
    hf_model.train(was_training)
    return {"eval_mlm_loss": total / max(count, 1), "eval_mlm_accuracy": correct / max(count, 1)}


def hf_train_step(
    hf_model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, step: int, cfg: TrainConfig
) -> float:
    """One optimizer step as `selfsup.trainer.train` takes it (one micro-batch): lr_at, mean
    cross entropy over the masked positions (transformers' own loss), clip, AdamW."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    loss = hf_model(**hf_inputs(batch)).loss
    loss.backward()
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(hf_model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


# ---------------------------------------------------------------- the two arms
@dataclass
class Curve:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    train_seconds: float = 0.0

    def add(self, step: int, metrics: dict[str, float]) -> None:
        self.steps.append(step)
        self.loss.append(metrics["eval_mlm_loss"])
        self.accuracy.append(metrics["eval_mlm_accuracy"])


def run_selfsup(model: BertPretrainer, data, cfg: PretrainConfig, run_dir: Path) -> Curve:
    """selfsup.trainer.train as users run it; its held-out evaluations read from metrics.jsonl."""
    curve = Curve()
    eval_set = data.eval_batches(cfg.train.eval_batches)
    curve.add(0, evaluate(model, eval_set, torch.device("cpu"), "fp32"))
    start = time.perf_counter()
    train(model, data, cfg.train, run_dir)
    curve.train_seconds = time.perf_counter() - start
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "eval_mlm_loss" in record:
            curve.add(record["step"], record)
    return curve


def run_hf(hf_model: nn.Module, decay: dict[str, bool], data, cfg: PretrainConfig) -> Curve:
    """The same steps, batches, schedule and evaluations for transformers' model."""
    t = cfg.train
    eval_set = data.eval_batches(t.eval_batches)
    optimizer = hf_optimizer(hf_model, decay, t)
    torch.manual_seed(t.seed)  # the dropout stream, seeded as train() seeds it
    curve = Curve()
    curve.add(0, hf_evaluate(hf_model, eval_set))
    start = time.perf_counter()
    for step in range(t.steps):
        loss = hf_train_step(hf_model, optimizer, to_device(data.batch(step), "cpu"), step, t)
        if not math.isfinite(loss):
            raise RuntimeError(f"transformers arm: loss {loss} at step {step + 1}")
        done = step + 1
        if (t.eval_every and done % t.eval_every == 0) or done == t.steps:
            curve.add(done, hf_evaluate(hf_model, eval_set))
    curve.train_seconds = time.perf_counter() - start  # evaluations included, as in train()
    return curve


# ---------------------------------------------------------------- report
@dataclass
class Baseline:
    """The context-blind guess on the held-out masks: its loss and its accuracy."""

    loss: float
    accuracy: float


@dataclass
class ParityResult:
    settings: Settings
    selfsup: Curve
    transformers: Curve
    unigram: Baseline
    table: str
    final_ratio: float  # selfsup / transformers, final held-out loss
    initial_relative_difference: float  # |selfsup - transformers| / transformers at step 0
    largest_relative_difference: float  # over every evaluation
    passed: bool


def relative_differences(ours: Curve, theirs: Curve) -> list[float]:
    """selfsup / transformers - 1 at every evaluation (the two arms' steps must match)."""
    if ours.steps != theirs.steps:
        raise RuntimeError(f"evaluation steps differ: {ours.steps} vs {theirs.steps}")
    return [a / b - 1.0 for a, b in zip(ours.loss, theirs.loss)]


def curve_table(ours: Curve, theirs: Curve, unigram: Baseline) -> str:
    rows = [
        [
            step,
            f"{ours.loss[i]:.4f}",
            f"{theirs.loss[i]:.4f}",
            f"{difference:+.1e}",
            f"{100 * ours.accuracy[i]:.1f}",
            f"{100 * theirs.accuracy[i]:.1f}",
        ]
        for i, (step, difference) in enumerate(zip(ours.steps, relative_differences(ours, theirs)))
    ]
    loss, accuracy = f"{unigram.loss:.4f}", f"{100 * unigram.accuracy:.1f}"
    rows.append(["unigram guess", loss, loss, "", accuracy, accuracy])
    headers = [
        "step",
        "selfsup held-out loss",
        "transformers held-out loss",
        "selfsup / transformers - 1",
        "selfsup acc %",
        "transformers acc %",
    ]
    return markdown_table(headers, rows)


def plot_curves(ours: Curve, theirs: Curve, unigram: Baseline, title: str, path: Path) -> None:
    """Both loss curves above, their relative difference below (the curves may overlap)."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.4, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(ours.steps, ours.loss, "o-", label="selfsup BertPretrainer (mlm)", markersize=3)
    top.plot(theirs.steps, theirs.loss, "s--", label="transformers BertForMaskedLM", markersize=3)
    top.axhline(unigram.loss, color="gray", linestyle=":", label="unigram guess")
    top.set_ylabel("held-out MLM loss (nats, 15% masks)")
    top.set_title(title, fontsize=9)
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(ours.steps, [100 * d for d in relative_differences(ours, theirs)], "k.-")
    bottom.axhline(0.0, color="gray", linewidth=0.8)
    bottom.set_ylabel("selfsup / HF - 1 (%)")
    bottom.set_xlabel("optimizer step")
    bottom.grid(alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- main
def parse_settings(argv: Sequence[str] | None) -> Settings:
    return parse_flat_settings(Settings, argv, __doc__)


def main(argv: Sequence[str] | None = None) -> ParityResult:
    begin = time.perf_counter()
    s = parse_settings(argv)
    torch.set_num_threads(s.threads)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, train_store, valid_store = prepared_data(
        Path(s.prepared) if s.prepared else out / "prepared"
    )
    cfg = pretrain_config(s, tokenizer.vocab_size)
    data, baseline = bert_batches(cfg, tokenizer, train_store, valid_store)
    unigram = Baseline(
        unigram_loss(train_store, data.eval_batches(cfg.train.eval_batches)),
        baseline["eval_mlm_unigram_accuracy"],
    )

    torch.manual_seed(cfg.train.seed)  # as the pretrain recipe builds its model
    model = BertPretrainer(cfg.model, cfg.objectives)
    hf_model = hf_masked_lm(cfg.model, tokenizer.pad_id)
    copy_into_hf(model, hf_model)
    decay = hf_decay_names(model, cfg.train)
    m = cfg.model
    title = (
        f"People's Daily, {m.num_layers} layers x {m.hidden_size}, {m.num_heads} heads, "
        f"{cfg.data.max_seq_len} tokens x {cfg.train.batch_size}, lr {cfg.train.lr:g}, "
        f"dropout {m.dropout:g}, seed {cfg.train.seed}"
    )
    print(title, flush=True)

    theirs = run_hf(hf_model, decay, data, cfg)
    print(f"transformers: {theirs.train_seconds:.1f} s", flush=True)
    run_dir = out / "selfsup-run"
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    ours = run_selfsup(model, data, cfg, run_dir)
    print(f"selfsup: {ours.train_seconds:.1f} s", flush=True)

    table = curve_table(ours, theirs, unigram)
    differences = [abs(d) for d in relative_differences(ours, theirs)]
    ratio = ours.loss[-1] / theirs.loss[-1]
    passed = ratio <= 1.0 + VERDICT_TOLERANCE
    print()
    print(table)
    print(
        f"\nrelative difference of the held-out losses: {differences[0]:.1e} at step 0 "
        f"(identical weights), at most {max(differences):.1e} over the run"
    )
    print(f"final held-out loss ratio selfsup / transformers: {ratio:.4f}")
    print(
        f"verdict: {'PASS' if passed else 'FAIL'}: selfsup's final held-out loss "
        f"{ours.loss[-1]:.4f} is {'no worse than' if passed else 'worse than'} transformers' "
        f"{theirs.loss[-1]:.4f} within {VERDICT_TOLERANCE:.0%}"
    )
    print(
        f"training + evaluation seconds: selfsup {ours.train_seconds:.1f}, "
        f"transformers {theirs.train_seconds:.1f}"
    )
    plot_curves(ours, theirs, unigram, title, out / "mlm_parity.png")
    result = ParityResult(
        s, ours, theirs, unigram, table, ratio, differences[0], max(differences), passed
    )
    import transformers

    versions = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    payload = dataclasses.asdict(result) | {"title": title} | versions
    (out / "mlm_parity.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {out / 'mlm_parity.png'} and {out / 'mlm_parity.json'}")
    print(f"benchmark wall time: {time.perf_counter() - begin:.1f} s")
    return result


if __name__ == "__main__":
    main()
