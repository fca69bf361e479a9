"""GPT runs in the playground: the in-context-learning builder (streamed generation is
`selfsup.inference.generate.stream_text`, used as it is).

The builder writes a k-shot prompt exactly as `selfsup icl` does (selfsup/evaluation/icl.py: one
demonstration per line in the template, then the query up to its label) and scores every label
word by the log-probability the model gives its tokens after the prompt; the label probabilities
are those scores normalised over the labels. No weight changes: what the examples teach, the
model has to read from the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.data.clm import encode_text
from selfsup.data.labelled import TextExample
from selfsup.errors import UserError
from selfsup.evaluation.icl import (
    continuation_logprobs,
    demonstration,
    label_distribution,
    render,
)
from selfsup.recipes import LoadedRun

DEFAULT_TEMPLATE = "{text} -> {label}"


@dataclass
class ICLResult:
    prompt: str  # what the model read: the demonstrations and the query up to its label
    labels: list[tuple[str, float, float]]  # (label, probability, log-probability), best first


def icl_label_probabilities(
    run: LoadedRun,
    examples: list[tuple[str, str]],
    query: str,
    labels: list[str] | None = None,
    template: str = DEFAULT_TEMPLATE,
) -> ICLResult:
    """Label probabilities for `query` after the (text, label) demonstrations; the candidate
    labels are `labels`, or those of the examples in order of appearance."""
    if "{text}" not in template or "{label}" not in template:
        raise UserError(f"template {template!r} must contain {{text}} and {{label}}")
    if template.index("{label}") < template.index("{text}"):
        raise UserError("template: {label} must come after {text} (the model reads left to right)")
    candidates = list(dict.fromkeys(labels or [label for _, label in examples]))
    if len(candidates) < 2:
        raise UserError("give at least two different labels (in the examples or as labels)")
    tok = run.tokenizer
    lines = [demonstration(template, TextExample(t, lab), lab, 0) for t, lab in examples]
    demos = "".join(line + "\n" for line in lines)
    query_text, gap = render(template, TextExample(query, candidates[0]), 0)
    prefix = encode_text(tok, demos)
    query_ids = encode_text(tok, query_text, bos=False)
    label_ids = [tok.encode(gap + label).ids for label in candidates]
    if not query_ids or any(not ids for ids in label_ids):
        raise UserError("the query or a label encodes to no tokens with this run's tokenizer")
    needed = len(prefix) + len(query_ids) + max(map(len, label_ids))
    limit = run.model.decoder.config.max_position
    if needed > limit:
        raise UserError(
            f"the prompt and its longest label are {needed} tokens; this model reads {limit}: "
            "fewer or shorter examples"
        )
    scores = continuation_logprobs(run.model, prefix, [query_ids], label_ids)  # (1, labels)
    probs = label_distribution(scores)[0]
    ranked = sorted(zip(candidates, probs, scores[0]), key=lambda item: -item[1])
    return ICLResult(demos + query_text, [(c, float(p), float(s)) for c, p, s in ranked])
