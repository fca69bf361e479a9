"""Greedy generation: selfsup's `generate_ids` against transformers' `GPT2LMHeadModel.generate`
with the same weights, within the window; and selfsup past the window against within it.

The selfsup GPT (learned positions, pre-LN, exact GELU, tied head) is copied into a GPT2 model
with `activation_function="gelu"` and the same LayerNorm epsilon; the head's per-token bias is
zeroed (GPT-2's head has none). The copy is checked first: the logits of a random sequence agree
to float32 rounding. Then each arm generates the same number of new tokens from the same prompt
(greedy, one thread), `--repeats` times; the table gives median tokens/s, the ratio against
transformers measured in the same run, and whether the generated ids are identical.

Past the window transformers cannot go (GPT-2 stops at n_positions); selfsup's row "past the
window" generates 3 windows' worth of tokens from a full-window prompt, with the default slide
(a quarter of the window) and with slide=1 (re-reading the window every token, as nanoGPT).

    python benchmarks/generation_vs_transformers.py                 # gpt-small's shape, vocab 8000
    python benchmarks/generation_vs_transformers.py --vocab 65 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from selfsup.inference.generate import GenerationConfig, generate_ids
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.clm import GPTPretrainer


def selfsup_model(args) -> GPTPretrainer:
    cfg = TransformerConfig(
        vocab_size=args.vocab,
        hidden_size=args.width,
        num_layers=args.layers,
        num_heads=args.heads,
        max_position=args.window,
        norm_position="pre",
        dropout=0.0,
        attention_dropout=0.0,
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    model = GPTPretrainer(cfg, ["clm"]).eval()
    with torch.no_grad():  # larger weights than the 0.02 init: a text that is not one token
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.objectives["clm"].head.bias.zero_()
    return model


def to_gpt2(model: GPTPretrainer):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.decoder.config
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.max_position,
            n_embd=cfg.hidden_size,
            n_layer=cfg.num_layers,
            n_head=cfg.num_heads,
            n_inner=cfg.ffn_size,
            activation_function="gelu",
            layer_norm_epsilon=cfg.layer_norm_eps,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    ).eval()
    decoder = model.decoder.decoder
    state = {
        "transformer.wte.weight": model.decoder.tokens.weight,
        "transformer.wpe.weight": decoder.positions.weight,
        "transformer.ln_f.weight": decoder.final_norm.weight,
        "transformer.ln_f.bias": decoder.final_norm.bias,
    }
    for i, block in enumerate(decoder.layers):
        h = f"transformer.h.{i}."
        pairs = {  # GPT-2's Conv1D stores (in, out): the transpose of nn.Linear
            "attn.c_attn": block.attention.qkv,
            "attn.c_proj": block.attention.out,
            "mlp.c_fc": block.feed_forward.up,
            "mlp.c_proj": block.feed_forward.down,
        }
        for name, linear in pairs.items():
            state[h + name + ".weight"] = linear.weight.T
            state[h + name + ".bias"] = linear.bias
        for name, norm in (("ln_1", block.attention_norm), ("ln_2", block.feed_forward_norm)):
            state[h + name + ".weight"], state[h + name + ".bias"] = norm.weight, norm.bias
    state["lm_head.weight"] = model.decoder.tokens.weight
    missing, unexpected = hf.load_state_dict(
        {k: v.detach() for k, v in state.items()}, strict=False
    )
    assert not unexpected and all("attn.bias" in k or "masked_bias" in k for k in missing), missing
    return hf


def timed(function, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = selfsup_model(args)
    hf = to_gpt2(model)
    probe = torch.randint(0, args.vocab, (1, args.window))
    with torch.no_grad():
        gap = (model.logits(probe) - hf(probe).logits).abs().max().item()
    print(f"logit parity on a {args.window}-token sequence: max |diff| {gap:.2e}")
    prompt = torch.randint(0, args.vocab, (args.prompt,)).tolist()
    new = args.window - args.prompt  # fill the window exactly

    def ours(prompt_ids, count, **extra):
        cfg = GenerationConfig(max_new_tokens=count, temperature=0.0, **extra)
        return list(generate_ids(model, prompt_ids, cfg))

    @torch.no_grad()
    def theirs():
        out = hf.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
        return out[0, len(prompt) :].tolist()

    ours(prompt, 4), theirs()  # warm-up
    hf_s, hf_ids = timed(theirs, args.repeats)
    in_s, in_ids = timed(lambda: ours(prompt, new), args.repeats)
    full = prompt + in_ids  # a full window: everything after it slides
    past_s, _ = timed(lambda: ours(full, 3 * args.window), args.repeats)
    crop_s, _ = timed(lambda: ours(full, 3 * args.window, slide=1), args.repeats)
    rows = [
        ("transformers generate, within the window", new / hf_s, "1.00x", ""),
        (
            "selfsup, within the window",
            new / in_s,
            f"{hf_s / in_s:.2f}x",
            "identical" if in_ids == hf_ids else "differ",
        ),
        ("selfsup, past the window (slide 1/4)", 3 * args.window / past_s, "", ""),
        (
            "selfsup, past the window (slide 1, re-read every token)",
            3 * args.window / crop_s,
            "",
            "",
        ),
    ]
    print(
        f"\nwidth {args.width}, {args.layers} layers, vocab {args.vocab}, window {args.window}, "
        f"{args.threads} thread(s), median of {args.repeats}\n"
    )
    print("| arm | tokens/s | vs transformers | ids |")
    print("|---|---|---|---|")
    for name, rate, ratio, same in rows:
        print(f"| {name} | {rate:.0f} | {ratio} | {same} |")


if __name__ == "__main__":
    main()
