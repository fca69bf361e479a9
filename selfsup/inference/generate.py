"""Text generation with a GPT run: greedy, temperature, top-k and top-p sampling, a key-value
cache, stop strings, and text streamed piece by piece.

Shape legend: T tokens fed in one call, V vocabulary.

- The key-value cache: the prompt is read once, then each new token is one forward pass of one
  position that attends to the cached keys and values of all earlier ones, so it costs O(length)
  instead of re-reading the whole text (O(length^2) per token). Past the position table
  (`model.max_position`) the model can only see the last max_position tokens; then each step
  re-reads that window (nanoGPT's cropping), so cached and uncached generation stay equal.
- Sampling (Holtzman et al. 2020 for top-p, "sample from the smallest set of tokens whose
  cumulative probability exceeds p"): the logits are divided by the temperature, cut to the top k,
  then to the nucleus, and a token is drawn with an explicit, seeded `torch.Generator`, so a seed
  reproduces a sample exactly. Temperature 0 is greedy decoding (argmax).
- Stop strings end generation at their first appearance in the generated text, which is returned
  without them. While streaming, text that might be the start of a stop string (and an incomplete
  UTF-8 character of byte-level BPE) is held back until it is known not to be.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.config import option
from selfsup.data.clm import decode_ids, encode_text
from selfsup.errors import UserError
from selfsup.models.gpt import new_caches
from selfsup.recipes import LoadedRun, load_run
from selfsup.runs import RunFolder


@dataclass
class GenerationConfig:
    max_new_tokens: int = option(200, "tokens to generate at most")
    temperature: float = option(1.0, "divide logits by this before sampling; 0 = greedy (argmax)")
    top_k: int = option(0, "sample among the k most likely tokens only (0: all)")
    top_p: float = option(1.0, "sample from the smallest set of tokens holding this probability")
    stop: list[str] = option([], "stop at the first of these strings (not included in the text)")
    seed: int = option(0, "seed of the sampling generator (same seed, same text)")
    use_cache: bool = option(True, "reuse keys and values of earlier tokens (O(length) a token)")

    def validate(self) -> None:
        """Each value named by its `selfsup generate` flag; NaN fails every range check."""
        if self.max_new_tokens <= 0:
            raise UserError(f"--max-tokens must be positive, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature < float("inf"):
            raise UserError(
                f"--temperature must be >= 0 and finite (0: greedy), got {self.temperature}"
            )
        if self.top_k < 0:
            raise UserError(f"--top-k must be >= 0 (0: all tokens), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        if any(not s for s in self.stop):
            raise UserError("a stop string must not be empty")


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(..., V) logits with everything below the k-th largest set to -inf (ties kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """(..., V) logits outside the nucleus set to -inf: tokens are kept in order of probability
    while the probability of those kept before them is below p (the most likely always stays)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose_token(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator) -> int:
    """One next token from (V,) logits: argmax at temperature 0, else a filtered sample."""
    logits = logits.float().cpu()
    if cfg.temperature == 0:
        return int(logits.argmax())
    logits = filter_top_p(filter_top_k(logits / cfg.temperature, cfg.top_k), cfg.top_p)
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


@torch.no_grad()
def generate_ids(
    model: torch.nn.Module, prompt_ids: list[int], cfg: GenerationConfig
) -> Iterator[int]:
    """Yield new token ids one by one. `model.logits(ids (1, T), kv_caches) -> (1, T, V)` is
    GPTPretrainer's; the model should be in eval mode."""
    if not prompt_ids:
        raise UserError("the prompt is empty; generation needs at least one token to start from")
    model_cfg = model.decoder.config
    window = model_cfg.max_position
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)
    ids = list(prompt_ids)
    caches, cached = None, 0  # caches hold the keys and values of ids[:cached]

    def as_input(tokens: list[int]) -> torch.Tensor:
        return torch.tensor([tokens], dtype=torch.long, device=device)

    for _ in range(cfg.max_new_tokens):
        if not cfg.use_cache:
            logits = model.logits(as_input(ids[-window:]))
        elif caches is None or len(ids) > window:  # first step, or the window has slid
            caches = new_caches(model_cfg)
            logits = model.logits(as_input(ids[-window:]), caches)
        else:
            logits = model.logits(as_input(ids[cached:]), caches)
        cached = len(ids)
        token = choose_token(logits[0, -1], cfg, generator)
        ids.append(token)
        yield token


def _held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` may still grow into a stop string (or are an
    unfinished byte-level character, decoded as U+FFFD)."""
    keep = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                keep = max(keep, n)
                break
    while keep < len(text) and text[len(text) - keep - 1] == "\ufffd":
        keep += 1
    return keep


def stream_text(run, prompt: str, cfg: GenerationConfig) -> Iterator[str]:
    """Pieces of the generated continuation of `prompt`, ready to print as they come."""
    cfg.validate()
    tokenizer = run.tokenizer
    prompt_ids = encode_text(tokenizer, prompt)
    prompt_text = decode_ids(tokenizer, prompt_ids)
    new_ids: list[int] = []
    emitted = 0
    generated = ""
    for token in generate_ids(run.model, prompt_ids, cfg):
        new_ids.append(token)
        full = decode_ids(tokenizer, prompt_ids + new_ids)
        # continuations never change the decoded prompt; fall back to the new ids alone if so
        generated = (
            full[len(prompt_text) :]
            if full.startswith(prompt_text)
            else decode_ids(tokenizer, new_ids)
        )
        hits = [generated.find(s) for s in cfg.stop if s in generated]
        if hits:
            end = min(hits)
            if end > emitted:
                yield generated[emitted:end]
            return
        safe = len(generated) - _held_back(generated, cfg.stop)
        if safe > emitted:
            yield generated[emitted:safe]
            emitted = safe
    if len(generated) > emitted:
        yield generated[emitted:]


def generate(run, prompt: str, cfg: GenerationConfig | None = None) -> str:
    """The continuation of `prompt` by a GPT run (see `load_gpt`), stop string excluded."""
    return "".join(stream_text(run, prompt, cfg or GenerationConfig()))


def load_gpt(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """A GPT run from `selfsup pretrain --arch gpt`, in eval mode."""
    run = RunFolder.open(
        run_dir,
        archs=("gpt",),
        refusal="{path}: a {arch} run; generation needs a gpt run (selfsup pretrain --arch gpt)",
    )
    return load_run(run, device)
