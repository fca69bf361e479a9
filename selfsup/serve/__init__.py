"""`selfsup serve`: a local playground page and a JSON API for trained runs.

    runs.py      load each run once, name it, say what it offers (its mode), one lock per run
    text.py      BERT's contextual vectors; a fine-tuned run's label distribution and tags
    qa.py        the answer `selfsup ask` gives, with the n-best list behind it
    gpt.py       the in-context-learning builder (generation is inference/generate.py's)
    images.py    SimCLR/BYOL: a folder's features, the nearest neighbours of an uploaded image
    app.py       the Starlette app: routes, input checks and limits, one-line JSON errors, SSE
    static/      the page: index.html, app.js, style.css (no build step, nothing from a CDN)

Everything but app.py is plain functions, testable without HTTP; only app.py imports starlette
and uvicorn (the optional `serve` extra), so importing this package costs nothing.
"""
