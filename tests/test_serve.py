"""`selfsup serve`: the model-facing functions (n-best answers, contextual vectors, ICL label
probabilities, image neighbours), every API endpoint on tiny runs of each type, every kind of bad
input (a 4xx with a one-line JSON message, and the server still answering), and a bounded load
test on loopback: 200 requests from 20 concurrent clients, none failed, latency percentiles
printed."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install -e .[serve]")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install -e .[serve]")

from serve_helpers import make_tiny_runs, running_server  # noqa: E402

from selfsup.cli import main  # noqa: E402
from selfsup.errors import UserError  # noqa: E402
from selfsup.serve.text import cosine_similarities, find_word, principal_components_2d  # noqa: E402
from selfsup.tasks.qa_windows import (  # noqa: E402
    WindowConfig,
    best_spans,
    build_windows,
    n_best_spans,
    predict_answer,
)

PASSAGE = "一二三四五六七八九十" * 4 + "【甲丙戊】" + "六七八九十" * 3  # longer than one window
QUESTION = "括号里是什么？"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.getbasetemp() / "serve-runs")


@pytest.fixture(scope="module")
def url(runs):
    with running_server(runs) as address:
        yield address


def request(url: str, method: str, path: str, body=None, headers=None, timeout: float = 60):
    """(status, headers, body bytes) of one HTTP request; a dict body is sent as JSON."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    if isinstance(body, dict | list):
        body = json.dumps(body, ensure_ascii=False).encode()
    elif isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post(url: str, path: str, body) -> tuple[int, dict]:
    status, _, data = request(url, "POST", path, body)
    return status, json.loads(data)


def sse_events(data: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in data.decode().split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
    return events


# ---------------------------------------------------------------- plain functions
def _words(n: int, rng: np.random.Generator) -> tuple[str, list[tuple[int, int]]]:
    """A text of n short words, one token each, with exact offsets."""
    text, offsets = "", []
    for i in range(n):
        word = "abcdefgh"[i % 8] * int(rng.integers(1, 4))
        offsets.append((len(text), len(text) + len(word)))
        text += word + " "
    return text, offsets


@pytest.mark.parametrize("seed", range(40))
def test_n_best_starts_with_the_answer_and_lists_distinct_spans_best_first(seed):
    rng = np.random.default_rng(seed)
    text, offsets = _words(int(rng.integers(0, 60)), rng)
    cfg = WindowConfig(
        max_seq_len=20,
        max_question_len=4,
        stride=int(rng.integers(1, 14)),
        max_answer_len=int(rng.integers(1, 6)),
        n_best=int(rng.integers(1, 6)),
        max_context_rule=bool(rng.integers(2)),
    )
    ids = [10 + i % 50 for i in range(len(offsets))]
    windows = build_windows([5, 6, 7], ids, offsets, cfg, 1, 2)
    starts = [rng.normal(size=len(w.input_ids) + 2) for w in windows]  # logits may be padded
    ends = [rng.normal(size=len(w.input_ids) + 2) for w in windows]
    best = predict_answer(windows, starts, ends, text, offsets, cfg)
    n_best = n_best_spans(windows, starts, ends, text, offsets, cfg, n=7)
    # the reference: each window's own best span, the first window winning ties
    reference = None
    for index, window in enumerate(windows):
        spans = best_spans(starts[index], ends[index], window, cfg)
        if spans and (reference is None or spans[0].score > reference[0].score):
            reference = (spans[0], index)
    if reference is None:
        assert best.window < 0 and n_best == []
        return
    span, index = reference
    first, last = (
        windows[index].context_token_indices[p] for p in (span.start_position, span.end_position)
    )
    assert (best.window, best.score) == (index, span.score)
    assert (best.start_char, best.end_char) == (offsets[first][0], offsets[last][1])
    assert n_best[0] == best
    assert 1 <= len(n_best) <= 7
    assert [a.score for a in n_best] == sorted((a.score for a in n_best), reverse=True)
    assert len({(a.start_char, a.end_char) for a in n_best}) == len(n_best)
    for a in n_best:
        assert text[a.start_char : a.end_char] == a.text and a.text.strip()


def test_similarities_and_projection_known_values():
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    assert cosine_similarities(vectors) == pytest.approx(
        np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=float)
    )
    points = principal_components_2d(vectors)
    assert points.shape == (3, 2)
    centred = vectors - vectors.mean(0)  # the projection keeps every distance (rank 2 here)
    for i in range(3):
        for j in range(3):
            assert np.linalg.norm(points[i] - points[j]) == pytest.approx(
                np.linalg.norm(centred[i] - centred[j])
            )
    assert principal_components_2d(vectors[:1]).tolist() == [[0.0, 0.0]]
    assert principal_components_2d(np.ones((3, 4))).tolist() == [[0.0, 0.0]] * 3


def test_find_word_finds_every_occurrence():
    picks = find_word(["人民人", "无", "人"], "人")
    assert [(p.sentence, p.start, p.end) for p in picks] == [(0, 0, 1), (0, 2, 3), (2, 0, 1)]
    assert find_word(["aaaa"], "aa") and len(find_word(["aaaa"], "aa")) == 2


def test_same_character_gets_different_vectors_in_different_contexts(runs):
    from selfsup.inference.fill_mask import load_pretrained
    from selfsup.serve.text import contextual_vectors

    run = load_pretrained(runs["bert"])
    sentences = ["人民日报发表社论。", "中华人民共和国成立了。", "人民日报发表社论。"]
    vectors = contextual_vectors(run, sentences, find_word(sentences, "人"))
    similarity = cosine_similarities(vectors)
    assert similarity[0, 2] == pytest.approx(1.0, abs=1e-5)  # same sentence, same vector
    assert similarity[0, 1] < 0.999  # same character, another context: another vector


def test_icl_probabilities_are_a_distribution_over_the_labels(runs):
    from selfsup.inference.generate import load_gpt
    from selfsup.serve.gpt import icl_label_probabilities

    run = load_gpt(runs["gpt"])
    result = icl_label_probabilities(run, [("ROMEO", "x"), ("JULIET", "y")], "ROMEO")
    assert result.prompt == "ROMEO -> x\nJULIET -> y\nROMEO ->"
    assert {label for label, _, _ in result.labels} == {"x", "y"}
    assert sum(p for _, p, _ in result.labels) == pytest.approx(1.0)
    assert result.labels[0][1] >= result.labels[1][1]
    with pytest.raises(UserError, match="two different labels"):
        icl_label_probabilities(run, [("a", "x")], "b")
    with pytest.raises(UserError, match="reads 64"):
        icl_label_probabilities(run, [("ROMEO " * 30, "x"), ("JULIET", "y")], "ROMEO")


def test_serving_refuses_what_it_cannot_show(runs, tmp_path, capsys):
    from selfsup.serve.runs import load_served_runs, run_names

    assert run_names(["a/run", "b/run", "c/other", "d/run"]) == ["run", "run-2", "other", "run-3"]
    with pytest.raises(UserError, match="--images DIR"):
        load_served_runs([runs["simclr"]])
    with pytest.raises(UserError, match="none of the runs given"):
        load_served_runs([runs["bert"]], images=runs["images"])
    with pytest.raises(UserError, match="no images"):
        load_served_runs([runs["simclr"]], images=tmp_path)
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert main(["serve", str(runs["bert"]), "--port", port]) == 2
        assert "cannot listen on 127.0.0.1 port" in capsys.readouterr().err
    assert main(["serve", str(runs["bert"]), "--port", "70000"]) == 2
    assert "--port must be between" in capsys.readouterr().err


def test_without_the_serve_extra_the_command_says_what_to_install(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "selfsup.serve.app", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve", "some-run"]) == 2
    assert 'needs uvicorn: pip install -e ".[serve]"' in capsys.readouterr().err


def test_the_command_prints_its_url_serves_and_stops_on_ctrl_c(runs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "selfsup.cli", "serve", str(runs["bert"]), str(runs["qa"])]
    proc = subprocess.Popen(
        [*command, "--port", "0", "--device", "cpu"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # ends when the process does
            if line.startswith("open http://127.0.0.1:"):
                break
        address = line.split()[1].rstrip("/")
        status, _, data = request(address, "GET", "/api/runs")
        assert status == 200 and [r["name"] for r in json.loads(data)["runs"]] == ["bert", "qa"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- the API, endpoint by endpoint
def test_runs_and_page(url):
    status, headers, data = request(url, "GET", "/api/runs")
    assert status == 200
    listed = json.loads(data)
    modes = {r["name"]: r["mode"] for r in listed["runs"]}
    assert modes == {
        "bert": "bert",
        "gpt": "gpt",
        "sentiment": "classification",
        "tagger": "tagging",
        "qa": "qa",
        "simclr": "images",
    }
    assert listed["limits"]["passage_chars"] == 20_000
    for path in ("/", "/static/app.js", "/static/style.css"):
        status, headers, data = request(url, "GET", path)
        assert status == 200 and data, path
        # no CDN, nothing from outside: the one absolute URL is SVG's namespace name, not fetched
        urls = set(re.findall(rb"https?://[^\s\"'`)]+", data))
        assert urls <= {b"http://www.w3.org/2000/svg"}, urls


def test_fill_mask(url):
    status, data = post(
        url, "/api/fill-mask", {"run": "bert", "text": "中华人民共[MASK]国成立了。"}
    )
    assert status == 200
    (mask,) = data["masks"]
    assert mask["position"] == 5 and len(mask["candidates"]) == 5
    assert mask["candidates"][0]["token"] == "和"  # the tiny corpus is memorised
    probs = [c["probability"] for c in mask["candidates"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    status, data = post(url, "/api/fill-mask", {"text": "[MASK]民[MASK]报", "top_k": 2})
    assert status == 200 and [len(m["candidates"]) for m in data["masks"]] == [2, 2]


def test_embeddings(url):
    sentences = ["人民日报发表社论。", "中华人民共和国成立了。"]
    status, data = post(url, "/api/embeddings", {"sentences": sentences, "word": "人民"})
    assert status == 200
    assert [(p["sentence"], p["start"], p["text"]) for p in data["picks"]] == [
        (0, 0, "人民"),
        (1, 2, "人民"),
    ]
    assert np.array(data["similarity"]).shape == (2, 2) and np.array(data["points"]).shape == (2, 2)
    picks = [{"sentence": 0, "start": 1, "end": 2}, {"sentence": 1, "start": 3, "end": 4}]
    status, data = post(url, "/api/embeddings", {"sentences": sentences, "picks": picks})
    assert status == 200 and [p["text"] for p in data["picks"]] == ["民", "民"]
    assert data["similarity"][0][0] == pytest.approx(1.0, abs=1e-3)


def test_classify_and_tag(url):
    status, data = post(url, "/api/classify", {"run": "sentiment", "text": "一二好三四"})
    assert status == 200
    assert [x["label"] for x in data["labels"]][0] == "pos"
    assert sum(x["probability"] for x in data["labels"]) == pytest.approx(1.0)
    status, data = post(url, "/api/tag", {"run": "tagger", "text": "一二 北京三"})
    assert status == 200
    assert [(t["text"], t["tag"]) for t in data["tags"]] == [
        ("一", "O"),
        ("二", "O"),
        ("北", "B-LOC"),
        ("京", "I-LOC"),
        ("三", "O"),
    ]
    assert data["tags"][2]["start"] == 3  # offsets count the space


def test_answer_matches_selfsup_ask(url, runs):
    from selfsup.data.labelled import QAExample
    from selfsup.inference.answer import answer_questions, load_finetuned

    status, data = post(url, "/api/answer", {"question": QUESTION, "context": PASSAGE})
    assert status == 200
    assert data["windows"] > 1
    (expected,) = answer_questions(
        load_finetuned(runs["qa"]), [QAExample("q", QUESTION, PASSAGE, [])]
    )
    answer = data["answer"]
    assert (answer["text"], answer["start"], answer["end"]) == (
        expected.text,
        expected.start_char,
        expected.end_char,
    )
    assert PASSAGE[answer["start"] : answer["end"]] == answer["text"] == "甲丙戊"
    assert data["n_best"][0]["text"] == answer["text"] and len(data["n_best"]) == 5
    assert sum(a["probability"] for a in data["n_best"]) == pytest.approx(1.0)
    long = "一二三四五六七八九十" * 1990 + "【乙丁己】"  # 19,905 characters, under the limit
    status, data = post(url, "/api/answer", {"question": QUESTION, "context": long, "n_best": 1})
    assert status == 200 and data["windows"] > 100 and len(data["n_best"]) == 1


def test_generate_streams_events_that_add_up_to_the_library_text(url, runs):
    from selfsup.inference.generate import GenerationConfig, generate, load_gpt

    body = {"prompt": "JULIET:\n", "max_tokens": 12, "temperature": 0.9, "top_k": 5, "seed": 3}
    status, headers, data = request(url, "POST", "/api/generate", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(data)
    assert [name for name, _ in events[:-1]] == ["token"] * (len(events) - 1)
    assert len(events) > 3 and events[-1][0] == "done"
    text = "".join(e["text"] for _, e in events[:-1])
    cfg = GenerationConfig(max_new_tokens=12, temperature=0.9, top_k=5, seed=3)
    assert text == generate(load_gpt(runs["gpt"]), "JULIET:\n", cfg)
    assert events[-1][1]["characters"] == len(text)
    _, _, data = request(url, "POST", "/api/generate", body | {"stop": ["\n"], "temperature": 0})
    stopped = "".join(e["text"] for name, e in sse_events(data) if name == "token")
    assert stopped == "Ay me"  # the greedy line, stopped at its end


def test_icl(url):
    body = {
        "examples": [{"text": "ROMEO", "label": "x"}, {"text": "JULIET", "label": "y"}],
        "query": "JULIET",
    }
    status, data = post(url, "/api/icl", body)
    assert status == 200 and data["prompt"].endswith("JULIET ->")
    assert sum(x["probability"] for x in data["labels"]) == pytest.approx(1.0)
    status, data = post(
        url, "/api/icl", body | {"labels": ["x", "y", "z"], "template": "{text}={label}"}
    )
    assert status == 200 and len(data["labels"]) == 3 and data["prompt"].endswith("JULIET=")


def test_neighbours_and_image_files(url, runs):
    query = sorted(runs["images"].iterdir())[5]
    status, _, data = request(url, "POST", "/api/neighbours?k=4", query.read_bytes())
    assert status == 200
    found = json.loads(data)["neighbours"]
    assert len(found) == 4
    assert found[0]["name"] == query.name and found[0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert [n["similarity"] for n in found] == sorted(
        (n["similarity"] for n in found), reverse=True
    )
    status, headers, image = request(url, "GET", found[0]["url"])
    assert status == 200 and image == query.read_bytes()


# ---------------------------------------------------------------- bad input
BAD_JSON = [
    ("/api/fill-mask", b"{not json", 400, "malformed JSON"),
    ("/api/fill-mask", b"\xff\xfe", 400, "not UTF-8"),
    ("/api/fill-mask", b"[1, 2]", 400, "JSON object"),
    ("/api/answer", b"", 400, "malformed JSON"),
]
BAD_FIELDS = [
    ("/api/fill-mask", {"text": ""}, 422, "text: empty"),
    ("/api/fill-mask", {"text": "   "}, 422, "text: empty"),
    ("/api/fill-mask", {}, 422, "text: missing"),
    ("/api/fill-mask", {"text": 3}, 422, "expected a string"),
    ("/api/fill-mask", {"text": "没有面具"}, 422, "no [MASK]"),
    ("/api/fill-mask", {"text": "中" * 2001 + "[MASK]"}, 413, "at most 2,000"),
    ("/api/fill-mask", {"text": "中" * 200 + "[MASK]"}, 422, "reads at most 64"),
    ("/api/fill-mask", {"text": "a[MASK]", "top_k": 0}, 422, "between 1 and 50"),
    ("/api/fill-mask", {"text": "a[MASK]", "top_k": "5"}, 422, "an integer"),
    ("/api/fill-mask", {"text": "a[MASK]", "top_k": True}, 422, "an integer"),
    ("/api/fill-mask", {"run": "gpt", "text": "a[MASK]"}, 422, "needs a bert run"),
    ("/api/fill-mask", {"run": "nope", "text": "a[MASK]"}, 404, "no run named 'nope'"),
    ("/api/fill-mask", {"run": 7, "text": "a[MASK]"}, 422, "a run's name"),
    ("/api/embeddings", {"sentences": ["人民"], "word": "天"}, 422, "in none of the sentences"),
    ("/api/embeddings", {"sentences": ["人民"]}, 422, "either word"),
    ("/api/embeddings", {"sentences": [], "word": "人"}, 422, "non-empty list"),
    ("/api/embeddings", {"sentences": ["人"] * 17, "word": "人"}, 413, "at most 16"),
    ("/api/embeddings", {"sentences": ["人", 5], "word": "人"}, 422, "sentences[1]"),
    (
        "/api/embeddings",
        {"sentences": ["人民"], "picks": [{"sentence": 3, "start": 0, "end": 1}]},
        422,
        "sentence: must be between",
    ),
    (
        "/api/embeddings",
        {"sentences": ["人民"], "picks": [{"sentence": 0, "start": 1, "end": 9}]},
        422,
        "outside it",
    ),
    ("/api/embeddings", {"sentences": ["人民"], "picks": ["x"]}, 422, "picks[0]"),
    ("/api/classify", {"text": "好", "text_b": "坏"}, 422, "not a pair"),
    ("/api/classify", {"run": "tagger", "text": "好"}, 422, "needs a classification or pair"),
    ("/api/tag", {"text": "北京" * 40}, 422, "reads at most 62"),
    ("/api/answer", {"question": QUESTION, "context": ""}, 422, "context: empty"),
    ("/api/answer", {"question": "", "context": PASSAGE}, 422, "question: empty"),
    ("/api/answer", {"question": QUESTION, "context": "中" * 20_001}, 413, "at most 20,000"),
    ("/api/answer", {"question": QUESTION, "context": PASSAGE, "n_best": 21}, 422, "between"),
    ("/api/generate", {"prompt": ""}, 422, "prompt: empty"),
    ("/api/generate", {"prompt": "a", "max_tokens": 1001}, 422, "between 1 and 1000"),
    ("/api/generate", {"prompt": "a", "temperature": -1}, 422, "temperature"),
    ("/api/generate", {"prompt": "a", "top_p": 0}, 422, "top_p"),
    ("/api/generate", {"prompt": "a", "top_p": 1.5}, 422, "top_p"),
    ("/api/generate", {"prompt": "a", "stop": [""]}, 422, "stop[0]: empty"),
    ("/api/generate", {"prompt": "a", "stop": "x"}, 422, "stop: expected a non-empty list"),
    ("/api/icl", {"examples": [], "query": "a"}, 422, "examples: expected a non-empty list"),
    ("/api/icl", {"examples": [{"text": "a"}], "query": "a"}, 422, "label: missing"),
    ("/api/icl", {"examples": ["a"], "query": "a"}, 422, "examples[0]"),
    (
        "/api/icl",
        {"examples": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], "query": "c"}
        | {"template": "{label}: {text}"},
        422,
        "must come after",
    ),
]


@pytest.mark.parametrize("path,body,status,message", BAD_JSON + BAD_FIELDS)
def test_bad_input_gets_a_4xx_with_one_line(url, path, body, status, message):
    got, _, data = request(url, "POST", path, body)
    error = json.loads(data)["error"]
    assert got == status and message in error, (got, error)
    assert "\n" not in error and len(error) < 300


def test_bad_requests_outside_json(url):
    cases = [
        ("GET", "/api/fill-mask", None, {}, 405),
        ("GET", "/nothing/here", None, {}, 404),
        ("POST", "/api/neighbours", b"", {}, 422),
        ("POST", "/api/neighbours", b"not an image", {}, 422),
        ("POST", "/api/neighbours?k=0", b"x", {}, 422),
        ("POST", "/api/neighbours?k=many", b"x", {}, 422),
        ("POST", "/api/neighbours?run=bert", b"x", {}, 422),
        ("GET", "/api/images/simclr/999", None, {}, 404),
        ("GET", "/api/images/bert/0", None, {}, 422),
        ("POST", "/api/fill-mask", b"{}", {"Content-Length": str(10**9)}, 413),
        ("POST", "/api/answer", b"x" * (300 * 1024), {}, 413),
        ("POST", "/api/fill-mask", b"{}", {"Origin": "http://other.example"}, 403),
        ("POST", "/api/fill-mask", b"{}", {"Origin": "null"}, 403),
        ("GET", "/api/runs", None, {"Host": "other.example:8000"}, 403),  # DNS rebinding
    ]
    for method, path, body, headers, status in cases:
        if "Content-Length" in headers:  # a body announced far over the limit: refused unread
            got, data = _declared_too_large(url, path)
        else:
            got, _, data = request(url, method, path, body, headers)
        error = json.loads(data)["error"]
        assert got == status and "\n" not in error, (method, path, got, error)
    body = {"text": "中华人民共[MASK]国"}
    status, _, _ = request(url, "POST", "/api/fill-mask", body, {"Origin": url})  # its own page
    assert status == 200  # and the server still answers


def _declared_too_large(url: str, path: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_client_that_leaves_mid_stream_leaves_the_server_serving(url):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", "/api/generate", json.dumps({"prompt": "ROMEO:", "max_tokens": 1000}))
    response = conn.getresponse()
    assert response.status == 200 and response.read(20)
    conn.close()  # gone after the first events
    status, data = post(url, "/api/fill-mask", {"text": "中华人民共[MASK]国"})
    assert status == 200
    _, _, data = request(url, "POST", "/api/generate", {"prompt": "ROMEO:", "max_tokens": 4})
    assert sse_events(data)[-1][0] == "done"


# ---------------------------------------------------------------- load
def _load_request(url: str, i: int, image: bytes) -> tuple[str, int, float, bool]:
    """One request of the mix; (endpoint, status, seconds, answer looks right)."""
    kind = ["fill-mask", "answer", "generate", "classify", "tag", "icl", "neighbours"][i % 7]
    start = time.perf_counter()
    if kind == "generate":
        body = {"prompt": "ROMEO:\n", "max_tokens": 16, "seed": i}
        status, _, data = request(url, "POST", "/api/generate", body)
        ok = status == 200 and sse_events(data)[-1][0] == "done"
    elif kind == "neighbours":
        status, _, data = request(url, "POST", "/api/neighbours?k=3", image)
        ok = status == 200 and len(json.loads(data)["neighbours"]) == 3
    else:
        body = {
            "fill-mask": {"text": "中华人民共[MASK]国成立了。"},
            "answer": {"question": QUESTION, "context": PASSAGE},
            "classify": {"text": "一二好三"},
            "tag": {"text": "一北京二"},
            "icl": {
                "examples": [{"text": "ROMEO", "label": "x"}, {"text": "JULIET", "label": "y"}],
                "query": "ROMEO",
            },
        }[kind]
        status, data = post(url, f"/api/{kind}", body)
        ok = status == 200 and "error" not in data
    return kind, status, time.perf_counter() - start, ok


def test_load_200_requests_from_20_clients_none_fails(url, runs, capsys):
    image = sorted(runs["images"].iterdir())[0].read_bytes()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: _load_request(url, i, image), range(200)))
    wall = time.perf_counter() - started
    failed = [(kind, status) for kind, status, _, ok in results if not ok]
    assert not failed, failed
    latencies = np.array([seconds for _, _, seconds, _ in results]) * 1000
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    with capsys.disabled():
        print(
            f"\nload test: 200 requests, 20 clients, {wall:.1f} s ({200 / wall:.0f} requests/s); "
            f"latency ms p50 {p50:.0f}, p90 {p90:.0f}, p99 {p99:.0f}, max {latencies.max():.0f}"
        )
    assert math.isfinite(p99)
