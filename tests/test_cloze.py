"""The fixed cloze list: held out from the built-in corpus, well formed, scored by top-k hits."""

from selfsup.data.peoples_daily import peoples_daily_documents
from selfsup.evaluation.cloze import CLOZE_SENTENCES, ClozeResult, describe_cloze, split_cloze


def test_the_cloze_sentences_are_not_in_the_corpus_and_hide_one_character():
    corpus = "\n".join(s for d in peoples_daily_documents() for s in d.sentences)
    assert len(CLOZE_SENTENCES) >= 20
    kinds = {kind for _, kind in CLOZE_SENTENCES}
    assert kinds == {"common word", "name", "place", "number", "idiom"}
    for sentence, _ in CLOZE_SENTENCES:
        masked, answer = split_cloze(sentence)
        assert len(answer) == 1 and masked.count("[MASK]") == 1
        full = masked.replace("[MASK]", answer)
        assert full not in corpus, full
        assert answer in corpus  # learnable: the character itself occurs


def test_a_hit_is_the_answer_among_the_candidates():
    hit = ClozeResult("北京是中国的首[都]。", "place", "都", [("府", 0.5), ("都", 0.2)])
    miss = ClozeResult("北京是中国的首[都]。", "place", "都", [("府", 0.5), ("长", 0.2)])
    assert hit.hit and not miss.hit
    assert describe_cloze([hit, miss])[-1] == "  1 of 2 hidden characters in the top 2"
