// The browser page of `catlip serve --ui`: one HTML page, one script and one stylesheet,
// embedded as raw string literals so the daemon serves them with no resources, no build step and
// no network (works offline). Tests/browser/check_ui.py drives it in headless Chromium and
// Tests/browser/fake_server.py serves these same strings (read from this file) to develop against.

/// The page `catlip serve --ui` serves at `/` and its two assets, `/ui/app.js` and `/ui/app.css`.
///
/// The page searches the index by words (`POST /v1/search` with `{"text": ..., "top_k": ...}`,
/// what a phrase maps to from `GET /v1/synsets?q=`) or by an image (chosen, dropped or pasted:
/// `POST /v1/classify` and `POST /v1/search` with the image as the body), shows the matches as
/// thumbnail cards (`GET /v1/thumbnails/{row}`) with "more like this" (the card's thumbnail
/// searched as an image), the model (`GET /v1/model`) and the daemon's live figures
/// (`GET /metrics`, every 3 s while the tab is visible). It talks only to its own origin, has no
/// inline script or style (so ``contentSecurityPolicy`` holds), and puts every server string into
/// the DOM as text, never as markup. Element ids the browser test relies on: `#query`,
/// `#search-button`, `#file-input`, `#drop-zone`, `#results .result img`, `#synsets`, `#labels`,
/// `#model`, `#metrics`, `#error`.
enum UIPage {
    /// The `Content-Security-Policy` header value the server sends with every UI response: only
    /// this origin's script, style and fetches, images from this origin or `blob:`/`data:`
    /// (the preview of a chosen image), no plugins, frames, forms or base URL changes.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        + "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// The UI asset at `path` (a request target; a query string is ignored): the page for `/`,
    /// the script for `/ui/app.js`, the stylesheet for `/ui/app.css`, nil for any other path.
    static func asset(path: String) -> (contentType: String, body: String)? {
        let bare = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        switch bare {
        case "/": return ("text/html; charset=utf-8", html)
        case "/ui/app.js": return ("text/javascript; charset=utf-8", script)
        case "/ui/app.css": return ("text/css; charset=utf-8", stylesheet)
        default: return nil
        }
    }

    /// The page at `/`: the search form, the drop zone, the results grid and the side panel.
    static let html = ##"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>catlip</title>
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="/ui/app.css">
        <script src="/ui/app.js" defer></script>
        </head>
        <body>
        <a class="skip" href="#results">Skip to results</a>
        <header class="top">
          <h1>catlip</h1>
          <p class="tagline">Search the indexed images by words (mapped through WordNet to the classifier head) or by an image.</p>
        </header>
        <div class="layout">
        <main>
          <section class="panel" aria-labelledby="search-heading">
            <h2 id="search-heading">Search</h2>
            <form id="search-form" role="search" novalidate>
              <label for="query">Words</label>
              <div class="row">
                <input id="query" name="text" type="search" list="suggestions" autocomplete="off" spellcheck="false"
                       placeholder="e.g. red car, dog, teapot" aria-describedby="preview" maxlength="200">
                <datalist id="suggestions"></datalist>
                <label class="topk" for="top-k">Results</label>
                <select id="top-k" name="top_k">
                  <option value="8">8</option>
                  <option value="20" selected>20</option>
                  <option value="50">50</option>
                </select>
                <button id="search-button" type="submit">Search</button>
              </div>
              <p id="preview" class="hint" aria-live="polite"></p>
            </form>
            <div id="drop-zone" class="drop-zone">
              <input id="file-input" class="visually-hidden" type="file" accept="image/*">
              <label for="file-input" class="file-button">Choose an image</label>
              <span class="hint">or drop one here, or paste it: its top synsets and nearest indexed images</span>
            </div>
          </section>

          <div id="error" class="error" role="alert" hidden></div>

          <section class="panel" id="image-panel" aria-labelledby="image-heading" hidden>
            <h2 id="image-heading">Image</h2>
            <div class="image-row">
              <img id="image-preview" alt="">
              <div>
                <h3>Top synsets</h3>
                <ol id="labels" class="labels"></ol>
              </div>
            </div>
          </section>

          <section class="panel" aria-labelledby="results-heading">
            <h2 id="results-heading">Results</h2>
            <div id="synsets" class="synsets" aria-label="Synsets the words mapped to"></div>
            <p id="status" class="hint" aria-live="polite">Type some words or choose an image.</p>
            <ul id="results" class="results" aria-busy="false"></ul>
          </section>
        </main>
        <aside class="side" aria-label="Daemon">
          <section class="panel" aria-labelledby="model-heading">
            <h2 id="model-heading">Model</h2>
            <dl id="model" class="facts"><dt>Status</dt><dd>loading…</dd></dl>
          </section>
          <section class="panel" aria-labelledby="metrics-heading">
            <h2 id="metrics-heading">Live metrics</h2>
            <div id="metrics" aria-live="off"><p class="hint">loading…</p></div>
          </section>
        </aside>
        </div>
        </body>
        </html>

        """##

    /// `/ui/app.js`: plain modern JavaScript (fetch, DOM), no framework, loaded with `defer`.
    static let script = ##"""
        // catlip's page: words or an image in, nearest indexed images out. Talks only to its own
        // origin (/v1/..., /metrics); every server string reaches the DOM through textContent or an
        // attribute, never as markup.
        "use strict";

        (() => {
          const $ = (id) => document.getElementById(id);
          const el = (tag, className, text) => {
            const node = document.createElement(tag);
            if (className) node.className = className;
            if (text !== undefined && text !== null) node.textContent = String(text);
            return node;
          };

          const form = $("search-form");
          const query = $("query");
          const topK = $("top-k");
          const suggestions = $("suggestions");
          const preview = $("preview");
          const dropZone = $("drop-zone");
          const fileInput = $("file-input");
          const errorBox = $("error");
          const imagePanel = $("image-panel");
          const imagePreview = $("image-preview");
          const labels = $("labels");
          const synsets = $("synsets");
          const statusLine = $("status");
          const results = $("results");
          const resultsHeading = $("results-heading");
          const model = $("model");
          const metrics = $("metrics");

          const THUMBNAIL = /^\/v1\/thumbnails\/(\d+)$/;
          const METRICS_EVERY_MS = 3000;

          // ---- errors --------------------------------------------------------------------------

          /** An error the daemon answered ({"error": {"code", "message"}}) or a network failure. */
          class APIError extends Error {
            constructor(message, code, status) {
              super(message);
              this.code = code;
              this.status = status;
            }
          }

          function showError(err) {
            if (err && err.name === "AbortError") return;
            let text = err && err.message ? err.message : String(err);
            if (err instanceof APIError && err.code) text = `${text} (${err.code}, HTTP ${err.status})`;
            errorBox.textContent = text;
            errorBox.hidden = false;
          }

          function clearError() {
            errorBox.hidden = true;
            errorBox.textContent = "";
          }

          // ---- requests ------------------------------------------------------------------------

          /** fetch on this origin; resolves to the parsed JSON, rejects with APIError. */
          async function api(path, init = {}) {
            let response;
            try {
              response = await fetch(path, { credentials: "same-origin", ...init });
            } catch (err) {
              if (err && err.name === "AbortError") throw err;
              throw new APIError(`The daemon could not be reached (${err.message}).`, "network", 0);
            }
            const type = response.headers.get("Content-Type") || "";
            let body = null;
            if (type.includes("json")) {
              try { body = await response.json(); } catch { body = null; }
            }
            if (!response.ok) {
              const e = body && body.error;
              const message = e && typeof e.message === "string" ? e.message : `${response.status} ${response.statusText}`;
              throw new APIError(message, e && typeof e.code === "string" ? e.code : "", response.status);
            }
            if (body === null) throw new APIError(`${path} did not answer JSON.`, "bad_response", response.status);
            return body;
          }

          const postJSON = (path, value, signal) =>
            api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(value), signal });

          const postImage = (path, blob, signal) =>
            api(path, { method: "POST", headers: { "Content-Type": blob.type || "application/octet-stream" }, body: blob, signal });

          /** One in-flight request per purpose: a new one aborts the old, so stale answers never land. */
          function latest() {
            let controller = null;
            return () => {
              if (controller) controller.abort();
              controller = new AbortController();
              return controller.signal;
            };
          }
          const nextSearch = latest();
          const nextClassify = latest();
          const nextSuggest = latest();

          // ---- results -------------------------------------------------------------------------

          /** WordNet's lemma names join words with "_": shown with spaces. */
          function readable(lemma) {
            return typeof lemma === "string" ? lemma.replaceAll("_", " ") : "";
          }

          function formatScore(x) {
            return typeof x === "number" && Number.isFinite(x) ? x.toFixed(3) : "–";
          }

          /** The thumbnail URL of a match, only if it is one of ours (/v1/thumbnails/N). */
          function thumbnailOf(match) {
            if (typeof match.thumbnail !== "string") return null;
            return THUMBNAIL.test(match.thumbnail) ? match.thumbnail : null;
          }

          function resultCard(match) {
            const key = typeof match.key === "string" ? match.key : String(match.key ?? "");
            const li = el("li", "result");
            const thumb = thumbnailOf(match);
            if (thumb) {
              const img = el("img");
              img.src = thumb;
              img.alt = key;
              img.decoding = "async";
              img.width = 160;
              img.height = 160;
              li.append(img);
            } else {
              // no thumbnail in the index: the key's last component stands in for the picture
              const box = el("div", "no-thumb", key.split("/").pop() || key);
              box.setAttribute("aria-hidden", "true");
              li.append(box);
            }
            const meta = el("div", "meta");
            meta.append(el("p", "key", key));
            const score = el("p", "score", `score ${formatScore(match.score)}`);
            score.title = "cosine similarity";
            meta.append(score);
            const more = el("button", "more", "More like this");
            more.type = "button";
            more.setAttribute("aria-label", `More like ${key}`);
            if (thumb) {
              more.addEventListener("click", () => moreLike(thumb, key));
            } else {
              more.disabled = true;
              more.title = "The index has no thumbnail of this image to search with.";
            }
            meta.append(more);
            li.append(meta);
            return li;
          }

          function showResults(body, heading) {
            const first = Array.isArray(body.results) ? body.results[0] : null;
            const matches = first && Array.isArray(first.matches) ? first.matches : [];
            resultsHeading.textContent = heading;
            results.replaceChildren(...matches.map(resultCard));
            statusLine.textContent = matches.length === 0
              ? "No indexed images matched."
              : `${matches.length} nearest indexed image${matches.length === 1 ? "" : "s"}.`;
          }

          function synsetChip(s) {
            const chip = el("span", "synset");
            chip.append(el("span", "name", readable(s.lemma) || s.wnid || "?"), " ");
            if (s.wnid) chip.append(el("span", "id", s.wnid), " ");
            const rows = Array.isArray(s.rows) ? s.rows.length : 0;
            const how = [s.how, rows ? `${rows} row${rows === 1 ? "" : "s"}` : ""].filter(Boolean).join(", ");
            if (how) chip.append(el("span", "how", `(${how})`));
            return chip;
          }

          function showSynsets(list) {
            if (!Array.isArray(list) || list.length === 0) { synsets.replaceChildren(); return; }
            synsets.replaceChildren(el("span", "lead", "Mapped to:"), ...list.map(synsetChip));
          }

          function busy(on, text) {
            results.setAttribute("aria-busy", on ? "true" : "false");
            if (text !== undefined) statusLine.textContent = text;
          }

          // ---- text search ---------------------------------------------------------------------

          async function searchText(text) {
            text = text.trim();
            if (!text) { query.focus(); return; }
            clearError();
            const signal = nextSearch();
            nextClassify(); // an image's labels still coming in belong to the image, not to these words
            imagePanel.hidden = true;
            busy(true, `Searching for “${text}”…`);
            try {
              const body = await postJSON("/v1/search", { text, top_k: Number(topK.value) }, signal);
              showSynsets(body.query && body.query.synsets);
              showResults(body, `Nearest to “${text}”`);
              busy(false);
            } catch (err) {
              if (err.name === "AbortError") return;
              busy(false, "");
              showSynsets([]);
              results.replaceChildren();
              showError(err);
            }
          }

          form.addEventListener("submit", (event) => {
            event.preventDefault();
            searchText(query.value);
          });

          // Autocomplete: what the phrase maps to, as the user types (debounced).
          let suggestTimer = 0;
          query.addEventListener("input", () => {
            clearTimeout(suggestTimer);
            const q = query.value.trim();
            if (q.length < 2) { preview.textContent = ""; suggestions.replaceChildren(); return; }
            suggestTimer = setTimeout(() => suggest(q), 250);
          });

          async function suggest(q) {
            const signal = nextSuggest();
            try {
              const body = await api(`/v1/synsets?q=${encodeURIComponent(q)}`, { signal });
              const list = Array.isArray(body.synsets) ? body.synsets : [];
              const seen = new Set();
              const options = [];
              for (const s of list) {
                const lemma = readable(s.lemma);
                if (!lemma || seen.has(lemma)) continue;
                seen.add(lemma);
                const option = el("option");
                option.value = lemma;
                option.label = [s.wnid, s.how].filter(Boolean).join(" · ");
                options.push(option);
                if (options.length >= 12) break;
              }
              suggestions.replaceChildren(...options);
              preview.textContent = list.length === 0
                ? `“${q}” maps to no synset.`
                : `“${q}” maps to ${list.slice(0, 6).map((s) => readable(s.lemma) || s.wnid).join(", ")}${list.length > 6 ? ` and ${list.length - 6} more` : ""}.`;
            } catch (err) {
              if (err.name === "AbortError") return;
              preview.textContent = err instanceof APIError && err.code === "unmapped"
                ? `“${q}” maps to no synset.` : "";
            }
          }

          // ---- image search and classification -------------------------------------------------

          let previewURL = null;

          function showImage(blob, name) {
            if (previewURL) URL.revokeObjectURL(previewURL);
            previewURL = URL.createObjectURL(blob);
            imagePreview.src = previewURL;
            imagePreview.alt = `The image searched with: ${name}`;
            imagePanel.hidden = false;
          }

          function labelItem(l) {
            const li = el("li");
            const name = typeof l.class === "string" ? l.class : (readable(l.lemma) || l.wnid || `#${l.index}`);
            li.append(el("span", "name", name), " ");
            const meter = el("meter");
            meter.min = 0;
            meter.max = 1;
            meter.value = typeof l.score === "number" ? l.score : 0;
            meter.setAttribute("aria-label", `score of ${name}`);
            li.append(meter, el("span", "score", formatScore(l.score)));
            if (l.wnid) li.append(" ", el("span", "id", l.wnid));
            return li;
          }

          async function classify(blob) {
            const signal = nextClassify();
            labels.replaceChildren(el("li", "hint", "classifying…"));
            const body = await postImage("/v1/classify?top_k=5", blob, signal);
            const first = Array.isArray(body.results) ? body.results[0] : null;
            const list = first && Array.isArray(first.labels) ? first.labels : [];
            labels.replaceChildren(...list.map(labelItem));
          }

          async function searchImage(blob, heading) {
            const signal = nextSearch();
            busy(true, "Searching for similar images…");
            const body = await postImage(`/v1/search?top_k=${encodeURIComponent(topK.value)}`, blob, signal);
            showSynsets([]);
            showResults(body, heading);
            busy(false);
          }

          async function useImage(blob, name) {
            if (!blob) return;
            if (blob.type && !blob.type.startsWith("image/")) {
              showError(new Error(`${name} is not an image (${blob.type}).`));
              return;
            }
            clearError();
            showImage(blob, name);
            const outcomes = await Promise.allSettled([classify(blob), searchImage(blob, `Nearest to ${name}`)]);
            const failed = outcomes.find((o) => o.status === "rejected" && o.reason && o.reason.name !== "AbortError");
            if (failed) {
              busy(false, "");
              showError(failed.reason);
            }
          }

          async function moreLike(thumb, key) {
            clearError();
            try {
              const response = await fetch(thumb, { credentials: "same-origin" });
              if (!response.ok) throw new APIError(`The thumbnail of ${key} could not be fetched.`, "thumbnail", response.status);
              const blob = await response.blob();
              await useImage(blob.type ? blob : new Blob([blob], { type: "image/png" }), key);
            } catch (err) {
              showError(err);
            }
          }

          fileInput.addEventListener("change", () => {
            const file = fileInput.files && fileInput.files[0];
            if (file) useImage(file, file.name);
            fileInput.value = "";
          });

          for (const type of ["dragenter", "dragover"]) {
            dropZone.addEventListener(type, (event) => {
              event.preventDefault();
              dropZone.classList.add("dragging");
            });
          }
          for (const type of ["dragleave", "dragend"]) {
            dropZone.addEventListener(type, () => dropZone.classList.remove("dragging"));
          }
          dropZone.addEventListener("drop", (event) => {
            event.preventDefault();
            dropZone.classList.remove("dragging");
            const file = event.dataTransfer && event.dataTransfer.files[0];
            if (file) useImage(file, file.name);
          });
          // A file dropped outside the zone must not navigate away from the page.
          window.addEventListener("dragover", (event) => event.preventDefault());
          window.addEventListener("drop", (event) => event.preventDefault());

          document.addEventListener("paste", (event) => {
            const items = event.clipboardData ? Array.from(event.clipboardData.items) : [];
            const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
            if (!item) return;
            event.preventDefault();
            useImage(item.getAsFile(), "pasted image");
          });

          // ---- model ---------------------------------------------------------------------------

          const MODEL_FIELDS = [
            ["model", "Model"], ["architecture", "Architecture"], ["precision", "Precision"],
            ["embed_dim", "Embedding"], ["depth", "Depth"], ["image_size", "Image size"],
            ["classes", "Classes"], ["vocabulary", "Vocabulary"], ["index_rows", "Indexed images"],
            ["thumbnails", "Thumbnails"],
          ];

          function factValue(v) {
            if (typeof v === "boolean") return v ? "yes" : "no";
            if (typeof v === "number") return v.toLocaleString("en-US");
            if (v === null || v === undefined) return "–";
            return typeof v === "object" ? JSON.stringify(v) : String(v);
          }

          function showFacts(target, entries) {
            const nodes = [];
            for (const [name, value] of entries) nodes.push(el("dt", "", name), el("dd", "", factValue(value)));
            target.replaceChildren(...nodes);
          }

          async function loadModel() {
            try {
              const body = await api("/v1/model");
              const known = new Set(MODEL_FIELDS.map(([k]) => k));
              const entries = MODEL_FIELDS.filter(([k]) => k in body).map(([k, name]) => [name, body[k]]);
              for (const [k, v] of Object.entries(body)) if (!known.has(k)) entries.push([k, v]);
              showFacts(model, entries);
            } catch (err) {
              showFacts(model, [["Status", `unavailable: ${err.message}`]]);
            }
          }

          // ---- metrics -------------------------------------------------------------------------

          /** Prometheus text → [{name, labels, value}]. */
          function parseMetrics(text) {
            const samples = [];
            const line = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
            const label = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
            for (const raw of text.split("\n")) {
              if (!raw || raw.startsWith("#")) continue;
              const m = line.exec(raw);
              if (!m) continue;
              const labels = {};
              if (m[2]) for (const l of m[2].matchAll(label)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
              const value = Number(m[3]);
              if (!Number.isNaN(value)) samples.push({ name: m[1], labels, value });
            }
            return samples;
          }

          const sum = (samples, name, keep = () => true) =>
            samples.filter((s) => s.name === name && keep(s.labels)).reduce((a, s) => a + s.value, 0);
          const has = (samples, name) => samples.some((s) => s.name === name);

          /** The q-quantile of a cumulative histogram's buckets (as Prometheus's histogram_quantile). */
          function quantile(q, buckets) {
            const sorted = [...buckets].sort((a, b) => a.le - b.le);
            const total = sorted.length ? sorted[sorted.length - 1].count : 0;
            if (!total) return null;
            const rank = q * total;
            let prevLe = 0, prevCount = 0;
            for (const b of sorted) {
              if (b.count >= rank) {
                if (b.le === Infinity) return prevLe;
                const inBucket = b.count - prevCount;
                return inBucket > 0 ? prevLe + (b.le - prevLe) * ((rank - prevCount) / inBucket) : b.le;
              }
              prevLe = b.le;
              prevCount = b.count;
            }
            return prevLe;
          }

          /** Latency quantiles of one endpoint: from a summary's quantile lines, else the histogram. */
          function latency(samples, base, endpoint, q) {
            const ofEndpoint = (s) => s.labels.endpoint === endpoint;
            const summary = samples.find((s) => s.name === base && ofEndpoint(s) && Number(s.labels.quantile) === q);
            if (summary) return summary.value;
            const byLe = new Map();
            for (const s of samples) {
              if (s.name !== `${base}_bucket` || !ofEndpoint(s)) continue;
              const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
              byLe.set(le, (byLe.get(le) || 0) + s.value);
            }
            return quantile(q, [...byLe].map(([le, count]) => ({ le, count })));
          }

          const ms = (seconds) => (seconds === null || seconds === undefined || !Number.isFinite(seconds))
            ? "–" : seconds < 0.01 ? `${(seconds * 1000).toFixed(2)} ms` : `${(seconds * 1000).toFixed(1)} ms`;

          let lastTotals = null;

          function showMetrics(samples, now) {
            const P = "catlip_";
            const total = sum(samples, `${P}requests_total`);
            let rate = null;
            if (lastTotals && now > lastTotals.at) rate = Math.max(0, (total - lastTotals.total) / ((now - lastTotals.at) / 1000));
            lastTotals = { total, at: now };
            const batches = sum(samples, `${P}batch_size_images_count`);
            const facts = [
              ["Requests", total],
              ["Requests/s", rate === null ? "…" : rate.toFixed(2)],
              ["Errors", sum(samples, `${P}requests_total`, (l) => Number(l.status) >= 400)],
              ["In flight", sum(samples, `${P}requests_in_flight`)],
              ["Queue", `${sum(samples, `${P}queue_depth_images`)} images`],
              ["Connections", sum(samples, `${P}connections_open`)],
              ["Batches", batches],
              ["Mean batch", batches ? `${(sum(samples, `${P}batch_size_images_sum`) / batches).toFixed(2)} images` : "–"],
              ["Batch time", batches ? ms(sum(samples, `${P}batch_duration_seconds_sum`) / batches) : "–"],
              ["Images", `${sum(samples, `${P}images_decoded_total`)} decoded, ${sum(samples, `${P}images_rejected_total`)} rejected`],
            ];
            const dl = el("dl", "facts");
            showFacts(dl, facts);

            const endpoints = [...new Set(samples.filter((s) => s.name === `${P}requests_total` && s.labels.endpoint)
              .map((s) => s.labels.endpoint))].sort();
            const nodes = [dl];
            if (endpoints.length) {
              const table = el("table");
              table.append(el("caption", "", "Latency by endpoint (since start)"));
              const head = el("tr");
              for (const h of ["endpoint", "requests", "p50", "p95"]) {
                const th = el("th", "", h);
                th.scope = "col";
                head.append(th);
              }
              const thead = el("thead");
              thead.append(head);
              const tbody = el("tbody");
              for (const endpoint of endpoints) {
                const row = el("tr");
                const th = el("th", "", endpoint);
                th.scope = "row";
                const base = `${P}request_duration_seconds`;
                row.append(th,
                  el("td", "", sum(samples, `${P}requests_total`, (l) => l.endpoint === endpoint)),
                  el("td", "", ms(latency(samples, base, endpoint, 0.5))),
                  el("td", "", ms(latency(samples, base, endpoint, 0.95))));
                tbody.append(row);
              }
              table.append(thead, tbody);
              nodes.push(table);
            }
            if (!has(samples, `${P}requests_total`) && samples.length === 0) nodes.push(el("p", "hint", "No metrics yet."));
            nodes.push(el("p", "hint", `updated ${new Date(now).toLocaleTimeString("en-GB")}`));
            metrics.replaceChildren(...nodes);
          }

          async function refreshMetrics() {
            try {
              const response = await fetch("/metrics", { credentials: "same-origin", cache: "no-store" });
              if (!response.ok) throw new Error(`HTTP ${response.status}`);
              showMetrics(parseMetrics(await response.text()), Date.now());
            } catch (err) {
              metrics.replaceChildren(el("p", "hint", `Metrics unavailable: ${err.message}`));
            }
          }

          let metricsTimer = 0;
          function scheduleMetrics() {
            clearTimeout(metricsTimer);
            if (document.hidden) return;
            metricsTimer = setTimeout(async () => { await refreshMetrics(); scheduleMetrics(); }, METRICS_EVERY_MS);
          }
          document.addEventListener("visibilitychange", () => {
            if (!document.hidden) { refreshMetrics(); scheduleMetrics(); }
          });

          loadModel();
          refreshMetrics();
          scheduleMetrics();
          query.focus();
        })();

        """##

    /// `/ui/app.css`: the page's styles, light and dark (`prefers-color-scheme`), no web fonts.
    static let stylesheet = ##"""
        :root {
          color-scheme: light dark;
          --bg: #f6f7f9;
          --panel: #ffffff;
          --text: #1b1f24;
          --muted: #5b6470;
          --line: #d9dde3;
          --accent: #1f5fbf;
          --accent-text: #ffffff;
          --error-bg: #fde8e8;
          --error-text: #8a1c1c;
          --chip: #eef2f8;
          font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
          font-size: 16px;
          line-height: 1.45;
        }
        @media (prefers-color-scheme: dark) {
          :root {
            --bg: #14171b;
            --panel: #1d2127;
            --text: #e6e9ed;
            --muted: #a0a8b3;
            --line: #343a42;
            --accent: #6ea2f0;
            --accent-text: #0d1117;
            --error-bg: #3a1717;
            --error-text: #ffb4b4;
            --chip: #262c35;
          }
        }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--text); }
        h1, h2, h3 { line-height: 1.2; margin: 0 0 0.5rem; }
        h1 { font-size: 1.5rem; }
        h2 { font-size: 1.1rem; }
        h3 { font-size: 0.95rem; color: var(--muted); }
        .skip { position: absolute; left: -999px; top: 0; }
        .skip:focus { left: 0.5rem; top: 0.5rem; background: var(--panel); padding: 0.25rem 0.5rem; z-index: 10; }
        .top { padding: 1rem 1.5rem 0.25rem; }
        .tagline { margin: 0; color: var(--muted); }
        .layout { display: grid; grid-template-columns: minmax(0, 1fr) 20rem; gap: 1rem; padding: 1rem 1.5rem 2rem; align-items: start; }
        @media (max-width: 900px) { .layout { grid-template-columns: minmax(0, 1fr); } }
        main, .side { display: grid; gap: 1rem; min-width: 0; }
        .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 1rem; }
        .row { display: flex; gap: 0.5rem; flex-wrap: wrap; align-items: center; }
        label { font-weight: 600; }
        input[type="search"] { flex: 1 1 16rem; min-width: 0; }
        input[type="search"], select, button, .file-button {
          font: inherit; padding: 0.45rem 0.7rem; border-radius: 6px; border: 1px solid var(--line);
          background: var(--panel); color: var(--text);
        }
        button, .file-button { cursor: pointer; }
        #search-button, .file-button { background: var(--accent); color: var(--accent-text); border-color: var(--accent); font-weight: 600; }
        button:disabled { opacity: 0.5; cursor: not-allowed; }
        .topk { font-weight: 400; color: var(--muted); }
        :focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); clip-path: inset(50%); white-space: nowrap; }
        #file-input:focus-visible + .file-button { outline: 3px solid var(--accent); outline-offset: 2px; }
        .hint { color: var(--muted); font-size: 0.9rem; margin: 0.4rem 0 0; min-height: 1.2em; }
        .drop-zone { margin-top: 1rem; border: 2px dashed var(--line); border-radius: 8px; padding: 1rem; display: flex; gap: 0.75rem; align-items: center; flex-wrap: wrap; }
        .drop-zone .hint { margin: 0; }
        .drop-zone.dragging { border-color: var(--accent); background: var(--chip); }
        .error { background: var(--error-bg); color: var(--error-text); border-radius: 8px; padding: 0.75rem 1rem; font-weight: 600; }
        .image-row { display: flex; gap: 1rem; align-items: flex-start; flex-wrap: wrap; }
        #image-preview { max-width: 12rem; max-height: 12rem; border-radius: 6px; border: 1px solid var(--line); }
        .labels { margin: 0; padding-left: 1.4rem; }
        .labels li { margin: 0.2rem 0; }
        .labels .name { font-weight: 600; }
        .labels .id, .synset .id { color: var(--muted); font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85em; }
        .labels meter { width: 8rem; vertical-align: middle; margin: 0 0.4rem; }
        .synsets { display: flex; flex-wrap: wrap; gap: 0.4rem; }
        .synsets:empty { display: none; }
        .synsets .lead { color: var(--muted); font-size: 0.9rem; align-self: center; }
        .synset { background: var(--chip); border-radius: 999px; padding: 0.2rem 0.7rem; font-size: 0.9rem; }
        .synset .how { color: var(--muted); }
        .results { list-style: none; margin: 0.75rem 0 0; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr)); gap: 0.75rem; }
        .result { border: 1px solid var(--line); border-radius: 8px; overflow: hidden; display: flex; flex-direction: column; background: var(--panel); }
        .result img, .result .no-thumb { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; background: var(--chip); display: block; image-rendering: auto; }
        .result .no-thumb { display: flex; align-items: center; justify-content: center; padding: 0.5rem; color: var(--muted); font-size: 0.8rem; overflow-wrap: anywhere; text-align: center; }
        .result .meta { padding: 0.4rem 0.5rem 0.5rem; display: grid; gap: 0.25rem; font-size: 0.85rem; }
        .result .key { overflow-wrap: anywhere; margin: 0; }
        .result .score { margin: 0; color: var(--muted); font-variant-numeric: tabular-nums; }
        .result .more { font-size: 0.8rem; padding: 0.25rem 0.4rem; }
        .facts { display: grid; grid-template-columns: auto 1fr; gap: 0.2rem 0.75rem; margin: 0; font-size: 0.9rem; }
        .facts dt { color: var(--muted); }
        .facts dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
        #metrics table { width: 100%; border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; margin-top: 0.75rem; }
        #metrics th, #metrics td { text-align: right; padding: 0.15rem 0.3rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
        #metrics th:first-child, #metrics td:first-child { text-align: left; }
        #metrics caption { text-align: left; color: var(--muted); font-size: 0.85rem; }

        """##
}
