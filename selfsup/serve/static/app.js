// The playground page: one tab per run served, one panel per run built from its mode's template
// in index.html, every form posting to the JSON API (selfsup/serve/app.py). Plain JavaScript,
// no build step and nothing fetched from outside this server. User text is only ever put into
// the page as text (textContent), never as HTML.
"use strict";

// ------------------------------------------------------------------ small helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return readResult(response);
}

async function readResult(response) {
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

// A list of labelled bars: [{label, value (0-1), text}]
function bars(items) {
  return el(
    "div",
    { class: "bars" },
    items.map((item) =>
      el(
        "div",
        { class: "bar-row" },
        el("span", { class: "bar-label" }, item.label),
        el(
          "span",
          { class: "bar-track" },
          el("span", { class: "bar-fill", style: { width: percent(Math.max(0, item.value)) } }),
        ),
        el("span", { class: "bar-value" }, item.text ?? percent(item.value)),
      ),
    ),
  );
}

function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

// Run `work(out)` for a form's output element, with busy / done / error states.
async function show(out, work) {
  out.dataset.state = "busy";
  out.replaceChildren(el("p", { class: "busy" }, "working…"));
  try {
    await work(out);
    out.dataset.state = "done";
  } catch (error) {
    out.replaceChildren(el("p", { class: "error" }, error.message));
    out.dataset.state = "error";
  }
}

function field(panel, name) {
  return panel.querySelector(`[data-field="${name}"]`);
}

function number(panel, name) {
  return Number(field(panel, name).value);
}

function onSubmit(panel, formName, handler) {
  const form = panel.querySelector(`[data-form="${formName}"]`);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    handler(panel.querySelector(`[data-out="${formName}"]`));
  });
}

// ------------------------------------------------------------------ BERT
function fillMaskPanel(panel, run) {
  onSubmit(panel, "fill-mask", (out) =>
    show(out, async () => {
      const data = await postJSON("/api/fill-mask", {
        run: run.name,
        text: field(panel, "text").value,
        top_k: number(panel, "top_k"),
      });
      out.replaceChildren(
        ...data.masks.map((mask, i) =>
          el(
            "div",
            { class: "mask" },
            el("h3", {}, `[MASK] #${i + 1}, character ${mask.position}`),
            bars(mask.candidates.map((c) => ({ label: c.token, value: c.probability }))),
          ),
        ),
      );
    }),
  );
}

function similarityTable(labels, matrix) {
  const header = el("tr", {}, el("th"), labels.map((label) => el("th", {}, label)));
  const rows = matrix.map((row, i) =>
    el(
      "tr",
      {},
      el("th", {}, labels[i]),
      row.map((value) => {
        const light = 100 - 45 * Math.max(0, value);
        return el("td", { style: { background: `hsl(210, 80%, ${light}%)` } }, value.toFixed(2));
      }),
    ),
  );
  return el("table", { class: "similarity" }, header, rows);
}

function scatter(labels, points) {
  const size = 320;
  const pad = 40;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const span = (values) => Math.max(...values) - Math.min(...values) || 1;
  const sx = (x) => pad + ((x - Math.min(...xs)) / span(xs)) * (size - 2 * pad);
  const sy = (y) => size - pad - ((y - Math.min(...ys)) / span(ys)) * (size - 2 * pad);
  const plot = svg("svg", { class: "scatter", width: size, height: size, viewBox: `0 0 ${size} ${size}` });
  plot.append(svg("rect", { x: 1, y: 1, width: size - 2, height: size - 2, class: "frame" }));
  points.forEach((p, i) => {
    const color = `hsl(${(i * 137) % 360}, 65%, 45%)`;
    plot.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 6, fill: color }));
    plot.append(svg("text", { x: sx(p[0]) + 9, y: sy(p[1]) + 4, fill: color }, labels[i]));
  });
  return plot;
}

function embeddingsPanel(panel, run) {
  let sentences = [];
  let picks = [];

  const compare = (out, body) =>
    show(out, async () => {
      const data = await postJSON("/api/embeddings", { run: run.name, sentences, ...body });
      picks = data.picks.map((p) => ({ sentence: p.sentence, start: p.start, end: p.end }));
      const labels = data.picks.map((p) => `S${p.sentence + 1}:${p.text}`);
      const isPicked = (s, c) => picks.some((p) => p.sentence === s && p.start <= c && c < p.end);
      const lines = sentences.map((sentence, s) =>
        el(
          "p",
          { class: "sentence" },
          el("span", { class: "tag-name" }, `S${s + 1}`),
          Array.from(sentence).map((ch, c) =>
            el(
              "span",
              {
                class: isPicked(s, c) ? "char picked" : "char",
                title: "click to pick or unpick",
                onclick: () => toggle(out, s, c),
              },
              ch,
            ),
          ),
        ),
      );
      out.replaceChildren(
        el("div", { class: "sentences" }, lines),
        el(
          "div",
          { class: "row" },
          el("div", {}, el("h3", {}, "cosine similarity"), similarityTable(labels, data.similarity)),
          el("div", {}, el("h3", {}, "2-D projection (principal components)"), scatter(labels, data.points)),
        ),
      );
    });

  // Character offsets here count code points, as Python's do (Array.from splits by code point).
  const toggle = (out, s, c) => {
    const kept = picks.filter((p) => !(p.sentence === s && p.start <= c && c < p.end));
    if (kept.length === picks.length) kept.push({ sentence: s, start: c, end: c + 1 });
    if (kept.length) compare(out, { picks: kept });
  };

  onSubmit(panel, "embeddings", (out) => {
    sentences = field(panel, "sentences").value.split("\n").filter((line) => line.trim());
    compare(out, { word: field(panel, "word").value });
  });
}

// ------------------------------------------------------------------ fine-tuned runs
function classifyPanel(panel, run) {
  onSubmit(panel, "classify", (out) =>
    show(out, async () => {
      const body = { run: run.name, text: field(panel, "text").value };
      if (run.mode === "pair") body.text_b = field(panel, "text_b").value;
      const data = await postJSON("/api/classify", body);
      out.replaceChildren(bars(data.labels.map((l) => ({ label: l.label, value: l.probability }))));
    }),
  );
}

function tagPanel(panel, run) {
  onSubmit(panel, "tag", (out) =>
    show(out, async () => {
      const data = await postJSON("/api/tag", { run: run.name, text: field(panel, "text").value });
      out.replaceChildren(
        el(
          "div",
          { class: "tagged" },
          data.tags.map((t) => {
            const type = t.tag.replace(/^[BIESM]-/, "");
            const outside = t.tag === "O";
            return el(
              "span",
              {
                class: outside ? "unit outside" : "unit",
                style: outside ? {} : { background: `hsl(${hue(type)}, 70%, 85%)` },
              },
              el("span", { class: "unit-text" }, t.text),
              el("span", { class: "unit-tag" }, t.tag),
            );
          }),
        ),
      );
    }),
  );
}

function answerPanel(panel, run) {
  onSubmit(panel, "answer", (out) =>
    show(out, async () => {
      const context = field(panel, "context").value;
      const data = await postJSON("/api/answer", {
        run: run.name,
        context,
        question: field(panel, "question").value,
        n_best: number(panel, "n_best"),
      });
      const summary = data.answer
        ? el("p", { class: "answer" }, "Answer: ", el("strong", { "data-answer": "" }, data.answer.text))
        : el("p", { class: "answer" }, "No answer found in the passage.");
      // Offsets are code-point offsets (Python's), so slice the passage as code points too.
      const chars = Array.from(context);
      const passage = data.answer
        ? el(
            "p",
            { class: "passage" },
            chars.slice(0, data.answer.start).join(""),
            el("mark", {}, chars.slice(data.answer.start, data.answer.end).join("")),
            chars.slice(data.answer.end).join(""),
          )
        : el("p", { class: "passage" }, context);
      out.replaceChildren(
        summary,
        el("p", { class: "hint" }, `read in ${data.windows} window${data.windows === 1 ? "" : "s"}`),
        passage,
        el("h3", {}, "n-best (score = start logit + end logit)"),
        bars(
          data.n_best.map((a) => ({
            label: a.text,
            value: a.probability,
            text: `${a.score.toFixed(2)} (${percent(a.probability)})`,
          })),
        ),
      );
    }),
  );
}

// ------------------------------------------------------------------ GPT
function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trim());
  }
  return { name, data: data.length ? JSON.parse(data.join("\n")) : {} };
}

function generatePanel(panel, run) {
  const stop = panel.querySelector('[data-action="stop"]');
  let controller = null;
  stop.addEventListener("click", () => controller && controller.abort());

  onSubmit(panel, "generate", (out) =>
    show(out, async () => {
      const prompt = field(panel, "prompt").value;
      const generated = el("span", { class: "generated", "data-generated": "" });
      const status = el("p", { class: "hint" }, "generating…");
      out.replaceChildren(el("pre", { class: "generation" }, el("span", { class: "prompt" }, prompt), generated), status);
      controller = new AbortController();
      stop.disabled = false;
      try {
        const response = await fetch("/api/generate", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          signal: controller.signal,
          body: JSON.stringify({
            run: run.name,
            prompt,
            temperature: number(panel, "temperature"),
            top_k: number(panel, "top_k"),
            top_p: number(panel, "top_p"),
            max_tokens: number(panel, "max_tokens"),
            seed: number(panel, "seed"),
          }),
        });
        if (!response.ok) await readResult(response);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const event = parseEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (event.name === "token") generated.append(event.data.text);
            else if (event.name === "error") throw new Error(event.data.error);
            else if (event.name === "done") {
              const rate = event.data.pieces / Math.max(event.data.seconds, 1e-3);
              status.textContent = `${event.data.pieces} pieces, ${event.data.characters} characters in ${event.data.seconds.toFixed(2)} s (${rate.toFixed(0)}/s)`;
            }
          }
        }
      } catch (error) {
        if (error.name !== "AbortError") throw error;
        status.textContent = "stopped";
      } finally {
        stop.disabled = true;
        controller = null;
      }
    }),
  );
}

const DEFAULT_EXAMPLES = [
  ["", ""],
  ["", ""],
];

function iclPanel(panel, run) {
  const list = panel.querySelector('[data-list="examples"]');
  const addRow = (text = "", label = "") =>
    list.append(
      el(
        "div",
        { class: "row example" },
        el("input", { "data-example": "text", placeholder: "text", value: text, class: "grow" }),
        el("input", { "data-example": "label", placeholder: "label", value: label, size: 8 }),
        el("button", { type: "button", onclick: (e) => e.target.parentElement.remove() }, "×"),
      ),
    );
  DEFAULT_EXAMPLES.forEach(([text, label]) => addRow(text, label));
  panel.querySelector('[data-action="add-example"]').addEventListener("click", () => addRow());

  onSubmit(panel, "icl", (out) =>
    show(out, async () => {
      const examples = Array.from(list.querySelectorAll(".example"))
        .map((row) => ({
          text: row.querySelector('[data-example="text"]').value,
          label: row.querySelector('[data-example="label"]').value,
        }))
        .filter((e) => e.text.trim() || e.label.trim());
      const data = await postJSON("/api/icl", {
        run: run.name,
        examples,
        query: field(panel, "query").value,
        template: field(panel, "template").value,
      });
      out.replaceChildren(
        bars(data.labels.map((l) => ({ label: l.label, value: l.probability }))),
        el("h3", {}, "the prompt the model read"),
        el("pre", { class: "generation" }, data.prompt),
      );
    }),
  );
}

// ------------------------------------------------------------------ SimCLR / BYOL
function neighboursPanel(panel, run) {
  panel.querySelector('[data-text="folder"]').textContent =
    `${run.images.folder} (${run.images.count} images)`;
  onSubmit(panel, "neighbours", (out) =>
    show(out, async () => {
      const file = field(panel, "image").files[0];
      if (!file) throw new Error("choose an image file first");
      const url = `/api/neighbours?run=${encodeURIComponent(run.name)}&k=${number(panel, "k")}`;
      const data = await readResult(await fetch(url, { method: "POST", body: file }));
      out.replaceChildren(
        el(
          "div",
          { class: "gallery" },
          el("figure", { class: "query" }, el("img", { src: URL.createObjectURL(file), alt: "your image" }), el("figcaption", {}, "your image")),
          data.neighbours.map((n) =>
            el(
              "figure",
              {},
              el("img", { src: n.url, alt: n.name }),
              el("figcaption", {}, n.name, el("br"), `cosine ${n.similarity.toFixed(3)}`),
            ),
          ),
        ),
      );
    }),
  );
}

// ------------------------------------------------------------------ tabs
const PANELS = {
  bert: [fillMaskPanel, embeddingsPanel],
  classification: [classifyPanel],
  pair: [classifyPanel],
  tagging: [tagPanel],
  qa: [answerPanel],
  gpt: [generatePanel, iclPanel],
  images: [neighboursPanel],
};

const MODE_NAMES = {
  bert: "BERT",
  classification: "classifier",
  pair: "pair classifier",
  tagging: "tagger",
  qa: "QA",
  gpt: "GPT",
  images: "images",
};

function select(name) {
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.run === name));
  }
  for (const panel of document.querySelectorAll("#panels > [data-run]")) {
    panel.hidden = panel.dataset.run !== name;
  }
}

async function start() {
  const main = document.getElementById("panels");
  let runs;
  try {
    runs = (await readResult(await fetch("/api/runs"))).runs;
  } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, `cannot list the runs: ${error.message}`));
    return;
  }
  const tabs = document.getElementById("tabs");
  main.replaceChildren();
  for (const run of runs) {
    const panel = el("div", { "data-run": run.name, "data-mode": run.mode, class: "panel" });
    panel.append(el("p", { class: "run-path" }, `${MODE_NAMES[run.mode]} run `, el("code", {}, run.path)));
    panel.append(document.getElementById(`mode-${run.mode}`).content.cloneNode(true));
    main.append(panel);
    PANELS[run.mode].forEach((setup) => setup(panel, run));
    tabs.append(
      el(
        "button",
        { "data-run": run.name, onclick: () => (location.hash = encodeURIComponent(run.name)) },
        run.name,
        el("small", {}, MODE_NAMES[run.mode]),
      ),
    );
  }
  const fromHash = () => {
    const wanted = decodeURIComponent(location.hash.slice(1));
    select(runs.some((r) => r.name === wanted) ? wanted : runs[0].name);
  };
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.body.dataset.ready = "true";
}

start();
