"""The playground's HTTP side: one static page and a JSON API over the loaded runs, as a
Starlette app served by uvicorn (the optional `serve` extra: `pip install -e ".[serve]"`).

    GET  /                        the page (static/index.html, app.js, style.css: no CDN)
    GET  /api/runs                the runs served, their modes and labels, and the input limits
    POST /api/fill-mask           {run, text, top_k}                  BERT
    POST /api/embeddings          {run, sentences, word | picks}      BERT
    POST /api/classify            {run, text, text_b}                 classification, pair
    POST /api/tag                 {run, text}                         tagging
    POST /api/answer              {run, question, context, n_best}    qa
    POST /api/generate            {run, prompt, max_tokens, temperature, top_k, top_p, seed, stop}
                                  -> server-sent events: token, then done (or error)   GPT
    POST /api/icl                 {run, examples, query, labels, template}              GPT
    POST /api/neighbours?run=&k=  the image file's bytes as the body                    images
    GET  /api/images/RUN/ID       a neighbour's image file

`run` may be left out when exactly one run served can answer the request. Bad input never
reaches a model: malformed JSON is a 400; a missing or empty field, a wrong type, a value out of
range or a request the run cannot answer (no [MASK], a GPT run asked to fill masks) a 422; text
over its limit or a body over its size a 413; an unknown run or path a 404; a request another
site's page made a browser send a 403 (`OtherSitesRefused`). Every error is a JSON object
{"error": one line}. A bug inside a handler is a 500 of the same shape with the traceback
in the server's log; the server keeps serving.

Model calls run in Starlette's thread pool, under the run's lock (serve/runs.py), so the event
loop stays free to accept requests and stream generated text while a model computes. Generation
takes the lock for one token at a time, so two streams on one run take turns token by token and
a client that goes away leaves no lock held.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from selfsup.errors import UserError
from selfsup.inference.fill_mask import fill_mask
from selfsup.inference.generate import GenerationConfig, stream_text
from selfsup.serve.gpt import DEFAULT_TEMPLATE, icl_label_probabilities
from selfsup.serve.images import nearest_images
from selfsup.serve.qa import answer_with_alternatives
from selfsup.serve.runs import ServedRun, load_served_runs
from selfsup.serve.text import (
    PickedWord,
    contextual_view,
    find_word,
    label_probabilities,
    tagged_characters,
)

STATIC = Path(__file__).parent / "static"
LIMITS = {
    "text_chars": 2_000,  # one text, prompt, question or sentence
    "passage_chars": 20_000,  # a QA passage (cut into windows: its length is only a cost)
    "json_bytes": 256 * 1024,  # a JSON body: a 20,000-character passage even as 6-byte escapes
    "image_bytes": 10 * 1024 * 1024,  # an uploaded image
    "max_tokens": 1_000,  # tokens generated in one request
    "top_k": 50,  # fill-mask candidates, neighbours
    "n_best": 20,  # QA alternatives
    "sentences": 16,  # contextual embeddings
    "examples": 32,  # ICL demonstrations
    "stop_strings": 8,
}
log = logging.getLogger("selfsup.serve")


class BadInput(Exception):
    """A request the API refuses: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- reading requests
async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (never read whole first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadInput(413, f"the body is {int(declared):,} bytes; at most {limit:,} are read")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput(413, f"the body is over {limit:,} bytes; at most {limit:,} are read")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> dict[str, Any]:
    body = await _body(request, LIMITS["json_bytes"])
    try:
        data = json.loads(body.decode("utf-8"))  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError:
        raise BadInput(400, "malformed JSON: the body is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise BadInput(400, f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadInput(400, f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _text(
    body: dict,
    key: str,
    limit: int = LIMITS["text_chars"],
    required: bool = True,
    blank: bool = False,
) -> str | None:
    """body[key] as a string of at most `limit` characters; spaces only count as empty unless
    `blank` (a stop string may be a line break)."""
    value = body.get(key)
    if value is None and not required:
        return None
    if value is None:
        raise BadInput(422, f"{key}: missing (a string)")
    if not isinstance(value, str):
        raise BadInput(422, f"{key}: expected a string, got {type(value).__name__}")
    if not (value if blank else value.strip()):
        raise BadInput(422, f"{key}: empty")
    if len(value) > limit:
        raise BadInput(413, f"{key}: {len(value):,} characters; at most {limit:,}")
    return value


def _number(body: dict, key: str, default: float, low: float, high: float, kind: type = int):
    """body[key] (default when absent) as `kind`, checked to lie in [low, high]."""
    value = body.get(key, default)
    numeric = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise BadInput(422, f"{key}: expected {'a number' if kind is float else 'an integer'}")
    if not (math.isfinite(value) and low <= value <= high):
        raise BadInput(422, f"{key}: must be between {low} and {high}, got {value}")
    return kind(value)


def _list(body: dict, key: str, limit: int, required: bool = True) -> list:
    value = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise BadInput(422, f"{key}: expected a non-empty list")
    if len(value) > limit:
        raise BadInput(413, f"{key}: {len(value)} items; at most {limit}")
    return value


def _strings(
    body: dict, key: str, limit: int, required: bool = True, blank: bool = False
) -> list[str]:
    items = _list(body, key, limit, required)
    return [
        _text({f"{key}[{i}]": item}, f"{key}[{i}]", blank=blank) for i, item in enumerate(items)
    ]


def _served(runs: dict[str, ServedRun], name: Any, modes: tuple[str, ...], what: str) -> ServedRun:
    """The run a request names; without a name, the one run that can answer it."""
    if name is None:
        able = [r for r in runs.values() if r.mode in modes]
        if len(able) == 1:
            return able[0]
        raise BadInput(
            422, f"run: missing; name one of {', '.join(r.name for r in able) or '(none served)'}"
        )
    if not isinstance(name, str):
        raise BadInput(422, "run: expected a run's name (a string)")
    if name not in runs:
        raise BadInput(404, f"no run named {name!r}; served: {', '.join(runs)}")
    served = runs[name]
    if served.mode not in modes:
        raise BadInput(
            422, f"{name} is a {served.mode} run; {what} needs a {' or '.join(modes)} run"
        )
    return served


async def _call(served: ServedRun, fn: Callable, *args) -> Any:
    """fn(*args) in the thread pool, holding the run's lock."""

    def locked():
        with served.lock:
            return fn(*args)

    return await run_in_threadpool(locked)


# ---------------------------------------------------------------- handlers
def _span(p, probability: float | None = None) -> dict[str, Any]:
    out = {"text": p.text, "start": p.start_char, "end": p.end_char, "score": p.score}
    return out if probability is None else out | {"probability": probability}


def _handlers(runs: dict[str, ServedRun]) -> list[Route]:
    """The API's routes over the loaded runs."""

    async def list_runs(request: Request) -> Response:
        return JSONResponse({"runs": [r.describe() for r in runs.values()], "limits": LIMITS})

    async def fill_mask_api(request: Request) -> Response:
        body = await _json(request)
        served = _served(runs, body.get("run"), ("bert",), "fill-mask")
        text = _text(body, "text")
        if "[MASK]" not in text:
            raise BadInput(422, "text: no [MASK] to fill; write [MASK] where a token is hidden")
        top_k = _number(body, "top_k", 5, 1, LIMITS["top_k"])
        masks = await _call(served, fill_mask, served.run, text, top_k)
        return JSONResponse(
            {
                "run": served.name,
                "masks": [
                    {
                        "position": m.position,
                        "candidates": [{"token": t, "probability": p} for t, p in m.candidates],
                    }
                    for m in masks
                ],
            }
        )

    async def embeddings(request: Request) -> Response:
        body = await _json(request)
        served = _served(runs, body.get("run"), ("bert",), "contextual embeddings")
        sentences = _strings(body, "sentences", LIMITS["sentences"])
        word = _text(body, "word", 100, required=False)
        raw_picks = _list(body, "picks", 64, required=False)
        if (word is None) == (not raw_picks):
            raise BadInput(422, "give either word (found in every sentence) or picks, not both")
        picks = []
        for i, item in enumerate(raw_picks):
            if not isinstance(item, dict):
                raise BadInput(422, f"picks[{i}]: expected {{sentence, start, end}}")
            picks.append(
                PickedWord(
                    _number(item, "sentence", None, 0, len(sentences) - 1),
                    _number(item, "start", None, 0, LIMITS["text_chars"]),
                    _number(item, "end", None, 1, LIMITS["text_chars"]),
                )
            )
        picks = picks or find_word(sentences, word)
        if not picks:
            raise BadInput(422, f"word: {word!r} is in none of the sentences")
        view = await _call(served, contextual_view, served.run, sentences, picks)
        return JSONResponse(
            {
                "run": served.name,
                "picks": [
                    {
                        "sentence": p.sentence,
                        "start": p.start,
                        "end": p.end,
                        "text": sentences[p.sentence][p.start : p.end],
                    }
                    for p in view.picks
                ],
                "similarity": view.similarity.round(4).tolist(),
                "points": view.points.round(4).tolist(),
            }
        )

    async def classify(request: Request) -> Response:
        body = await _json(request)
        served = _served(runs, body.get("run"), ("classification", "pair"), "classify")
        text = _text(body, "text")
        text_b = _text(body, "text_b", required=served.mode == "pair")
        if served.mode == "classification" and text_b is not None:
            raise BadInput(422, f"text_b: {served.name} classifies one text, not a pair")
        labels = await _call(served, label_probabilities, served.run, text, text_b)
        return JSONResponse(
            {"run": served.name, "labels": [{"label": k, "probability": p} for k, p in labels]}
        )

    async def tag(request: Request) -> Response:
        body = await _json(request)
        served = _served(runs, body.get("run"), ("tagging",), "tag")
        text = _text(body, "text")
        tags = await _call(served, tagged_characters, served.run, text)
        return JSONResponse(
            {
                "run": served.name,
                "tags": [{"start": a, "end": b, "text": text[a:b], "tag": t} for a, b, t in tags],
            }
        )

    async def answer(request: Request) -> Response:
        body = await _json(request)
        served = _served(runs, body.get("run"), ("qa",), "answer")
        question = _text(body, "question")
        context = _text(body, "context", LIMITS["passage_chars"])
        n_best = _number(body, "n_best", 5, 1, LIMITS["n_best"])
        found = await _call(served, answer_with_alternatives, served.run, question, context, n_best)
        return JSONResponse(
            {
                "run": served.name,
                "answer": _span(found.answer) if found.answer.window >= 0 else None,
                "n_best": [_span(a, p) for a, p in zip(found.n_best, found.probabilities)],
                "windows": found.windows,
            }
        )

    async def generate(request: Request) -> Response:
        body = await _json(request)
        served = _served(runs, body.get("run"), ("gpt",), "generate")
        cfg = GenerationConfig(
            max_new_tokens=_number(body, "max_tokens", 100, 1, LIMITS["max_tokens"]),
            temperature=_number(body, "temperature", 1.0, 0.0, 100.0, float),
            top_k=_number(body, "top_k", 0, 0, 1_000_000),
            top_p=_number(body, "top_p", 1.0, 0.0, 1.0, float),
            stop=_strings(body, "stop", LIMITS["stop_strings"], required=False, blank=True),
            seed=_number(body, "seed", 0, 0, 2**63 - 1),
        )
        if cfg.top_p == 0:
            raise BadInput(422, "top_p: must be above 0 (1: no nucleus cut)")
        prompt = _text(body, "prompt")
        return StreamingResponse(
            _generation_events(served, stream_text(served.run, prompt, cfg)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def icl(request: Request) -> Response:
        body = await _json(request)
        served = _served(runs, body.get("run"), ("gpt",), "in-context learning")
        examples = []
        for i, item in enumerate(_list(body, "examples", LIMITS["examples"])):
            if not isinstance(item, dict):
                raise BadInput(422, f"examples[{i}]: expected {{text, label}}")
            examples.append((_text(item, "text"), _text(item, "label", 100)))
        query = _text(body, "query")
        labels = _strings(body, "labels", 32, required=False) or None
        template = _text(body, "template", 200, required=False) or DEFAULT_TEMPLATE
        result = await _call(
            served, icl_label_probabilities, served.run, examples, query, labels, template
        )
        return JSONResponse(
            {
                "run": served.name,
                "prompt": result.prompt,
                "labels": [
                    {"label": k, "probability": p, "logprob": s} for k, p, s in result.labels
                ],
            }
        )

    async def neighbours(request: Request) -> Response:
        served = _served(runs, request.query_params.get("run"), ("images",), "neighbours")
        try:
            k = int(request.query_params.get("k", "8"))
        except ValueError:
            raise BadInput(422, "k: expected an integer") from None
        k = _number({"k": k}, "k", 8, 1, LIMITS["top_k"])
        data = await _body(request, LIMITS["image_bytes"])
        if not data:
            raise BadInput(422, "the body is empty: send the image file's bytes")
        found = await _call(served, nearest_images, served.run, served.images, data, k)
        folder = served.images.folder
        return JSONResponse(
            {
                "run": served.name,
                "neighbours": [
                    {
                        "id": i,
                        "name": served.images.files[i].relative_to(folder).as_posix(),
                        "similarity": s,
                        "url": f"/api/images/{served.name}/{i}",
                    }
                    for i, s in found
                ],
            }
        )

    async def image_file(request: Request) -> Response:
        served = _served(runs, request.path_params["run"], ("images",), "an image file")
        index = request.path_params["index"]
        if not 0 <= index < len(served.images.files):
            raise BadInput(404, f"{served.name} has no image {index}")
        return FileResponse(served.images.files[index])

    return [
        Route("/api/runs", list_runs),
        Route("/api/fill-mask", fill_mask_api, methods=["POST"]),
        Route("/api/embeddings", embeddings, methods=["POST"]),
        Route("/api/classify", classify, methods=["POST"]),
        Route("/api/tag", tag, methods=["POST"]),
        Route("/api/answer", answer, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/icl", icl, methods=["POST"]),
        Route("/api/neighbours", neighbours, methods=["POST"]),
        Route("/api/images/{run}/{index:int}", image_file),
    ]


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _generation_events(served: ServedRun, pieces: Iterator[str]) -> AsyncIterator[str]:
    """Server-sent events of a generation: `token` {text} per piece, then `done` {tokens,
    characters, seconds}, or `error` {error} when generation fails after the stream began."""

    def next_piece() -> str | None:
        with served.lock:
            return next(pieces, None)

    start, count, chars = time.perf_counter(), 0, 0
    try:
        while (piece := await run_in_threadpool(next_piece)) is not None:
            count, chars = count + 1, chars + len(piece)
            yield _event("token", {"text": piece})
    except UserError as e:
        yield _event("error", {"error": str(e)})
        return
    except Exception as e:  # the stream has begun: the status line is sent, report in-band
        log.exception("generation failed")
        yield _event("error", {"error": f"internal error: {e.__class__.__name__}: {e}"})
        return
    seconds = time.perf_counter() - start
    yield _event("done", {"pieces": count, "characters": chars, "seconds": round(seconds, 3)})


# ---------------------------------------------------------------- the app and the server
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


async def _bad_input(request: Request, exc: BadInput) -> Response:
    return _error(exc.status, str(exc))


async def _user_error(request: Request, exc: UserError) -> Response:
    return _error(422, str(exc))


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return _error(404, f"no such page: {request.url.path}")
    if exc.status_code == 405:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")
    return _error(exc.status_code, exc.detail)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the client gets one line, uvicorn logs the traceback (Starlette re-raises)."""
    return _error(500, f"internal error: {exc.__class__.__name__}: {exc} (see the server log)")


def is_loopback(host: str) -> bool:
    """Whether a host name or address (a Host header's, brackets and port allowed) is this
    machine's loopback."""
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OtherSitesRefused:
    """ASGI middleware: a 403 for what a web page on another site could make a browser send
    here. A cross-origin request carries an Origin that is not this server (a page elsewhere
    posting text/plain needs no CORS preflight); on loopback, a Host that is not a loopback name
    is DNS rebinding (a name of the other site's that now points at 127.0.0.1). curl sends no
    Origin and is unaffected."""

    def __init__(self, app, loopback_only: bool) -> None:
        self.app, self.loopback_only = app, loopback_only

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            host, origin = headers.get("host", ""), headers.get("origin")
            refusal = None
            if self.loopback_only and not is_loopback(host):
                refusal = f"Host {host!r} refused: this server answers on loopback only"
            elif origin is not None and urlsplit(origin).netloc != host:
                refusal = f"a request from {origin} refused: only this server's page may call it"
            if refusal:
                await _error(403, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(runs: dict[str, ServedRun], loopback_only: bool = True) -> Starlette:
    """The page and the API over runs loaded by `serve.runs.load_served_runs`; `loopback_only`
    (serving on 127.0.0.1) also refuses requests whose Host is not a loopback name."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    return Starlette(
        routes=[
            Route("/", page),
            *_handlers(runs),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(OtherSitesRefused, loopback_only=loopback_only)],
        exception_handlers={
            BadInput: _bad_input,
            UserError: _user_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )


def listening_server(app: Starlette, host: str, port: int) -> tuple[uvicorn.Server, socket.socket]:
    """A uvicorn server and the socket it will serve on, already bound and listening, so a port
    in use is a one-line error before anything runs, port 0 picks a free one, and the URL printed
    works as soon as it is printed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UserError(
            f"cannot listen on {host} port {port} ({e.strerror}): choose another with --port"
        ) from None
    sock.listen(2048)  # connections wait in the queue from now on, even before uvicorn runs
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config), sock


def _url(host: str, port: int) -> str:
    """The address to open: wildcard hosts are reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def serve(
    paths: list[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    images: str | None = None,
    device: str = "auto",
    say: Callable[[str], None] | None = None,
    dtype: str = "float32",
) -> None:
    """Load every run once, then serve the page and the API until Ctrl-C."""
    from selfsup.trainer import resolve_device

    say = say or functools.partial(print, flush=True)  # the URL shows at once, piped or not
    start = time.perf_counter()
    runs = load_served_runs(paths, images, str(resolve_device(device)), dtype)
    server, sock = listening_server(build_app(runs, is_loopback(host)), host, port)
    for served in runs.values():
        say(f"  {served.name:24s} {served.mode:15s} {served.path}")
    url = _url(host, sock.getsockname()[1])
    say(f"{len(runs)} run(s) loaded in {time.perf_counter() - start:.1f} s")
    if not is_loopback(host):
        say(f"listening on {host}: anyone who can reach this machine can use these runs")
    say(f"open {url} in a browser (API: {url}api/runs; Ctrl-C stops)")
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then raises the Ctrl-C it caught
        pass
    say("stopped")
