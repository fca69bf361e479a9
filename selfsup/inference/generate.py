"""Text generation with a GPT run: greedy, temperature, top-k and top-p sampling, a key-value
cache, stop strings, and text streamed piece by piece.

Shape legend: T tokens fed in one call, V vocabulary.

- The key-value cache: the prompt is read once, then each new token is one forward pass of one
  position that attends to the cached keys and values of all earlier ones, so it costs O(length)
  instead of re-reading the whole text (O(length^2) per token); its buffers hold the whole window
  and are written in place. Past the position table (`model.max_position`, with learned absolute
  positions the cache cannot simply roll) the oldest `slide` tokens are dropped at once (default a
  quarter of the window) and the rest is read again into a fresh cache: one re-read per `slide`
  tokens instead of one per token (nanoGPT's cropping, `slide=1`), so generation past the window
  runs at about the speed it has within it. The model then reads between 3/4 of the window and
  all of it; cached and uncached generation read the same context and give the same tokens.
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
    slide: int = option(
        0,
        "past the model's window, drop this many of the oldest tokens at once and read the rest "
        "again (0: a quarter of the window; 1: re-read the window every token, as nanoGPT crops)",
    )

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
        if self.slide < 0:
            raise UserError(f"--slide must be >= 0 (0: a quarter of the window), got {self.slide}")
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


def context_start(length: int, window: int, slide: int) -> int:
    """The first of `length` tokens the model reads: 0 while they fit its window, then moving
    `slide` tokens at a time, so that between window - slide + 1 and window tokens are read."""
    if length <= window:
        return 0
    return -(-(length - window) // slide) * slide  # the next multiple of slide


@torch.inference_mode()
def generate_ids(
    model: torch.nn.Module, prompt_ids: list[int], cfg: GenerationConfig
) -> Iterator[int]:
    """Yield new token ids one by one. `model.logits(ids (1, T), kv_caches, last_only)` is
    GPTPretrainer's; the model should be in eval mode.

    Each token is predicted from ids[context_start(...):]: the same context with and without the
    cache, so both give the same ids. With the cache, the text is read once when the context
    starts (the prompt, or after a slide) and each later token is one position."""
    if not prompt_ids:
        raise UserError("the prompt is empty; generation needs at least one token to start from")
    model_cfg = model.decoder.config
    window = model_cfg.max_position
    slide = cfg.slide or max(1, window // 4)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)
    ids = list(prompt_ids)
    caches, start, cached = None, 0, 0  # caches hold the keys and values of ids[start:cached]

    def as_input(tokens: list[int]) -> torch.Tensor:
        return torch.tensor([tokens], dtype=torch.long, device=device)

    for _ in range(cfg.max_new_tokens):
        first = context_start(len(ids), window, min(slide, window))
        if not cfg.use_cache:
            logits = model.logits(as_input(ids[first:]), last_only=True)
        elif caches is None or first != start:  # the first step, or the context has slid
            caches = new_caches(model_cfg, preallocate=True)
            logits = model.logits(as_input(ids[first:]), caches, last_only=True)
        else:
            logits = model.logits(as_input(ids[cached:]), caches, last_only=True)
        start, cached = first, len(ids)
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


LOOK_BACK = 4  # tokens decoded again before the new ones (a word's spacing depends on them)


class IncrementalDecoder:
    """The text that each new token adds to `decode_ids(tokenizer, ids)`, at a cost independent
    of the length of the text.

    decode_ids turns [SEP] and [CLS] into line breaks and decodes each line's tokens as one run,
    so earlier lines never change: a new token only needs its line. Within a line it is decoded
    with the LOOK_BACK tokens before it (spacing between words, WordPiece's ## joins and byte-level
    characters depend on neighbours), and the piece is what that decoding added. A token that
    ends inside a byte-level character is held until the character is complete."""

    def __init__(self, tokenizer, ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.line_breaks = {tokenizer.sep_id, tokenizer.cls_id}
        starts = [i + 1 for i, t in enumerate(ids) if t in self.line_breaks]
        self.texts_before = bool(starts)  # a line break after this point is always "\n"
        self.line = list(ids[starts[-1] if starts else 0 :])
        self.read = len(self.line)  # line[:read] has been turned into text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _added(self, final: bool) -> str | None:
        """Text of line[read:]: "" while it ends inside a character (unless `final`), None when
        the look-back decodes differently with the new tokens."""
        back = max(0, self.read - LOOK_BACK)
        before, after = self._decode(self.line[back : self.read]), self._decode(self.line[back:])
        if after.endswith("\ufffd") and not final:
            return ""
        if not after.startswith(before):
            return None
        self.read = len(self.line)
        return after[len(before) :]

    def add(self, token: int) -> str | None:
        """The text `token` adds ("" while held back), or None when the tokenizer rewrote earlier
        text (the caller then decodes the whole again)."""
        if token not in self.line_breaks:
            self.line.append(token)
            return self._added(final=False)
        rest = self.flush()
        if rest is None:
            return None
        # decode_ids: a line break is "\n" unless it is a [CLS] that starts the text
        newline = (
            self.texts_before or token != self.tokenizer.cls_id or bool(self._decode(self.line))
        )
        self.texts_before, self.line, self.read = True, [], 0
        return rest + ("\n" if newline else "")

    def flush(self) -> str | None:
        """Whatever the current line still holds back (an unfinished character, decoded as is)."""
        return self._added(final=True) if self.read < len(self.line) else ""


def stream_text(run, prompt: str, cfg: GenerationConfig) -> Iterator[str]:
    """Pieces of the generated continuation of `prompt`, ready to print as they come; each token
    costs the same at the 10th and the 10,000th (IncrementalDecoder)."""
    cfg.validate()
    tokenizer = run.tokenizer
    prompt_ids = encode_text(tokenizer, prompt)
    decoder = IncrementalDecoder(tokenizer, prompt_ids)
    new_ids: list[int] = []
    generated, emitted = "", 0  # the continuation decoded so far; how much of it was yielded
    longest_stop = max((len(s) for s in cfg.stop), default=0)
    for token in generate_ids(run.model, prompt_ids, cfg):
        new_ids.append(token)
        searched = max(0, len(generated) - longest_stop + 1)
        piece = decoder.add(token)
        if piece is None:  # rare: decode everything again, once
            generated, searched = _continuation(tokenizer, prompt_ids, new_ids), 0
            decoder = IncrementalDecoder(tokenizer, prompt_ids + new_ids)
        else:
            generated += piece
        hits = [h for h in (generated.find(s, searched) for s in cfg.stop) if h >= 0]
        if hits:
            end = min(hits)
            if end > emitted:
                yield generated[emitted:end]
            return
        safe = len(generated) - _held_back(generated, cfg.stop)
        if safe > emitted:
            yield generated[emitted:safe]
            emitted = safe
    generated += decoder.flush() or ""
    if len(generated) > emitted:
        yield generated[emitted:]


def _continuation(tokenizer, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text of new_ids after the prompt, decoded with it (the prompt never changes)."""
    full, prompt_text = (
        decode_ids(tokenizer, prompt_ids + new_ids),
        decode_ids(tokenizer, prompt_ids),
    )
    return (
        full[len(prompt_text) :] if full.startswith(prompt_text) else decode_ids(tokenizer, new_ids)
    )


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
