"""A fixed cloze check for a BERT pretrained on Chinese news: does the hidden character come back?

Held-out MLM accuracy says how often the model is right on average; these sentences say whether
it has learnt what a reader would test: words completed from context, the names, places, numbers
and idioms of the 1998 news. Each sentence was written for this list and checked absent from the
built-in People's Daily corpus (the full sentence never occurs in it), so the model has not seen
it; its parts (words, names) are of course in the corpus, which is what the model should learn.

The list was fixed (committed) before any preset was tuned against it, so it is not a list chosen
to flatter one model. A hit is the hidden character among the model's top k (5) candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.inference.fill_mask import fill_mask
from selfsup.recipes import LoadedRun

# (sentence with the hidden character in brackets, what it tests)
CLOZE_SENTENCES: list[tuple[str, str]] = [
    ("我们要坚持改革开[放]的基本国策。", "common word"),
    ("今年的经济工作取得了很大成[绩]。", "common word"),
    ("全家人高高兴兴地欢[度]春节。", "common word"),
    ("这次会议在北京隆重召[开]。", "common word"),
    ("政府将进一步加强环境保[护]工作。", "common word"),
    ("孩子们在学校里认真学[习]。", "common word"),
    ("农民的收入有了明显提[高]。", "common word"),
    ("江泽[民]主席会见了来访的外国客人。", "name"),
    ("国务院总理李[鹏]出席了会议。", "name"),
    ("纪念毛泽[东]同志诞辰一百零五周年。", "name"),
    ("学习邓小[平]同志的重要著作。", "name"),
    ("周恩[来]总理的光辉形象永远留在人们心中。", "name"),
    ("北京是中国的首[都]。", "place"),
    ("代表团昨天抵达上[海]进行访问。", "place"),
    ("广东省深[圳]市的经济发展很快。", "place"),
    ("长江三[峡]工程建设进展顺利。", "place"),
    ("西藏自治区拉[萨]市举行了庆祝活动。", "place"),
    ("香港特别行政[区]政府成立半年来。", "place"),
    ("一九九八年一[月]一日是元旦。", "number"),
    ("比去年同期增长百[分]之八。", "number"),
    ("全年粮食总产量达到四千九百亿公[斤]。", "number"),
    ("一年有十二个月，一天有二十四小[时]。", "number"),
    ("这件事真是一举两[得]。", "idiom"),
    ("他们发扬自力更[生]、艰苦奋斗的精神。", "idiom"),
    ("实事求[是]是我们党的思想路线。", "idiom"),
    ("全国上下齐心协[力]，共渡难关。", "idiom"),
    ("我国取得了举世瞩[目]的伟大成就。", "idiom"),
    ("这个村子发生了翻天覆[地]的变化。", "idiom"),
]


def split_cloze(sentence: str) -> tuple[str, str]:
    """ "北京是中国的首[都]。" -> ("北京是中国的首[MASK]。", "都")."""
    start, end = sentence.index("["), sentence.index("]")
    return sentence[:start] + "[MASK]" + sentence[end + 1 :], sentence[start + 1 : end]


@dataclass
class ClozeResult:
    sentence: str  # with the answer in brackets
    kind: str
    answer: str
    candidates: list[tuple[str, float]]  # the model's top k, most likely first

    @property
    def hit(self) -> bool:
        return any(token == self.answer for token, _ in self.candidates)


def run_cloze(
    run: LoadedRun, sentences: list[tuple[str, str]] = CLOZE_SENTENCES, top_k: int = 5
) -> list[ClozeResult]:
    """Each sentence's top-k candidates for its hidden character."""
    results = []
    for sentence, kind in sentences:
        masked, answer = split_cloze(sentence)
        (prediction,) = fill_mask(run, masked, top_k=top_k)
        results.append(ClozeResult(sentence, kind, answer, prediction.candidates))
    return results


def describe_cloze(results: list[ClozeResult]) -> list[str]:
    """One line per sentence (hit or miss, the candidates), then the count."""
    lines = []
    for r in results:
        guesses = " ".join(token for token, _ in r.candidates)
        lines.append(f"  {'hit ' if r.hit else 'miss'}  {r.sentence}  -> {guesses}")
    hits = sum(r.hit for r in results)
    lines.append(
        f"  {hits} of {len(results)} hidden characters in the top {len(results[0].candidates)}"
    )
    return lines
