#!/usr/bin/env python3
"""Drives the page `catlip serve --ui` serves in headless Chromium and checks it works.

    check_ui.py --url http://127.0.0.1:PORT --image FILE --word WORD --screenshot OUT.png

Loads `/` and checks the Content-Security-Policy header (on the page and its assets) and that no
request leaves the daemon's origin (every request is recorded; blob:/data: URLs are allowed).
Searches a word that maps to nothing and expects the daemon's message in #error; types WORD
(the autocomplete preview must fill from /v1/synsets), searches it and waits for at least one
`#results .result img` that loaded (naturalWidth > 0), with the keys shown as exactly the text the
daemon sent and every thumbnail from /v1/thumbnails/N; uploads FILE through #file-input and waits
for #labels entries and neighbour results; saves a full-page screenshot; then runs "More like
this" on the first card. Also requires #model and #metrics to fill, no CSP violation, no page
error and no console error. Prints one JSON summary line; exits 1 on any failure, 2 on bad usage.

Playwright for Python drives Debian's chromium through executable_path (no `playwright install`):
--chromium PATH, else $CHROMIUM, else /usr/bin/chromium.
"""

import argparse
import json
import os
import re
import sys
import time
from urllib.parse import urlsplit

UNMAPPED_WORD = "zqxjvwkq"

LOADED_IMAGES_JS = """() => [...document.querySelectorAll('#results .result img')]
    .filter(i => i.complete && i.naturalWidth > 0).length"""

CSP_PROBE_JS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI || ''}`.trim());
});
"""


class CheckFailed(Exception):
    pass


def main():
    parser = argparse.ArgumentParser(description="Check catlip serve --ui in headless Chromium.")
    parser.add_argument("--url", required=True, help="the daemon's origin, e.g. http://127.0.0.1:8080")
    parser.add_argument("--image", required=True, help="an image file to upload")
    parser.add_argument("--word", required=True, help="a word the head maps to synsets")
    parser.add_argument("--screenshot", required=True, help="where to save the PNG screenshot")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each step")
    args = parser.parse_args()
    if not os.path.isfile(args.image):
        parser.error(f"--image {args.image}: no such file")
    if not os.access(args.chromium, os.X_OK):
        parser.error(f"--chromium {args.chromium}: not an executable (apt-get install chromium)")

    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    base = args.url.rstrip("/")
    origin = urlsplit(base)
    origin = (origin.scheme, origin.netloc)
    timeout_ms = int(args.timeout * 1000)
    started = time.monotonic()
    summary = {"ok": False, "url": base, "word": args.word, "image": args.image}
    failures = []
    requests, off_origin, console_errors, page_errors = [], [], [], []

    def on_request(request):
        url = request.url
        requests.append(f"{request.method} {url}")
        parts = urlsplit(url)
        if parts.scheme in ("blob", "data"):
            return
        if (parts.scheme, parts.netloc) != origin:
            off_origin.append(url)

    def on_console(message):
        if message.type != "error":
            return
        text = message.text
        # the deliberate unmapped search answers 400, which Chromium logs as a failed load
        if "status of 400" in text and "Failed to load resource" in text:
            return
        console_errors.append(text)

    step = ["start"]

    def at(name):
        step[0] = name

    def check(condition, message):
        if not condition:
            raise CheckFailed(message)

    def expect_ok(response, what):
        if response.status != 200:
            try:
                text = response.text()[:300]
            except PlaywrightError:
                text = "(body gone)"
            raise CheckFailed(f"{what} answered {response.status}: {text}")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        context.add_init_script(CSP_PROBE_JS)
        context.on("request", on_request)
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        page.on("console", on_console)
        page.on("pageerror", lambda err: page_errors.append(str(err)))
        asset_csp = {}
        page.on("response", lambda r: asset_csp.__setitem__(urlsplit(r.url).path, r.headers.get("content-security-policy"))
                if urlsplit(r.url).path in ("/ui/app.js", "/ui/app.css") else None)
        try:
            # 1. the page and its security headers
            at("loading /")
            response = page.goto(base + "/", wait_until="load")
            check(response is not None and response.status == 200,
                  f"GET / answered {response.status if response else 'nothing'}")
            csp = response.headers.get("content-security-policy")
            summary["csp"] = csp
            check(csp, "GET / has no Content-Security-Policy header")
            check("script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp,
                  f"the CSP does not hold scripts to this origin: {csp}")
            for asset in ("/ui/app.js", "/ui/app.css"):
                check(asset_csp.get(asset), f"{asset} was not loaded with a Content-Security-Policy header")
            for selector in ("#query", "#search-button", "#file-input", "#drop-zone", "#results",
                             "#synsets", "#labels", "#model", "#metrics", "#error"):
                check(page.locator(selector).count() == 1, f"the page has no single {selector}")
            check(page.locator("label[for=query]").count() >= 1, "#query has no <label>")
            check(page.locator("label[for=file-input]").count() >= 1, "#file-input has no <label>")

            # 2. the model and the live metrics panels fill
            at("waiting for #model and #metrics to fill")
            page.wait_for_function("() => document.querySelector('#model dd') && "
                                   "!/loading/.test(document.querySelector('#model').textContent)")
            summary["model"] = page.locator("#model").inner_text().replace("\n", " ")
            check("unavailable" not in summary["model"], f"#model: {summary['model']}")
            page.wait_for_function("() => /Requests/.test(document.querySelector('#metrics').textContent)")

            # 3. a word that maps to nothing: the daemon's message in #error
            at("waiting for #error after searching an unmapped word")
            page.fill("#query", UNMAPPED_WORD)
            page.press("#query", "Enter")
            page.wait_for_selector("#error:not([hidden])")
            summary["unmapped_error"] = page.locator("#error").inner_text()
            check(summary["unmapped_error"].strip(), "#error shows no message for an unmapped word")

            # 4. the word: autocomplete preview, then results with loaded thumbnails
            at(f"searching {args.word!r}")
            page.fill("#query", "")
            page.locator("#query").press_sequentially(args.word, delay=40)
            try:
                page.wait_for_function("() => document.querySelector('#preview').textContent.trim() !== ''",
                                       timeout=min(timeout_ms, 10000))
                summary["preview"] = page.locator("#preview").inner_text()
            except PlaywrightError:
                raise CheckFailed("typing the word filled no autocomplete preview from /v1/synsets")
            with page.expect_response(lambda r: urlsplit(r.url).path == "/v1/search"
                                      and r.request.method == "POST") as searched:
                page.click("#search-button")
            search = searched.value
            expect_ok(search, f"searching {args.word!r}")
            body = search.json()
            at(f"waiting for a loaded thumbnail in #results after searching {args.word!r}")
            page.wait_for_function(f"() => ({LOADED_IMAGES_JS})() >= 1")
            check(page.locator("#error").is_hidden(), f"#error still shows: {page.locator('#error').inner_text()}")
            summary["text_results"] = page.locator("#results .result").count()
            summary["text_images_loaded"] = page.evaluate(LOADED_IMAGES_JS)
            summary["synsets"] = page.locator("#synsets .synset").count()
            check(summary["synsets"] >= 1, "#synsets shows none of the synsets the words mapped to")
            expected_keys = [m["key"] for m in body["results"][0]["matches"]]
            shown_keys = page.eval_on_selector_all("#results .result .key", "ns => ns.map(n => n.textContent)")
            check(shown_keys == expected_keys, f"the cards' keys {shown_keys[:3]}... are not the daemon's {expected_keys[:3]}...")
            markup = page.eval_on_selector_all("#results .result .key", "ns => ns.filter(n => n.children.length).length")
            check(markup == 0, "a result key was rendered as markup")
            sources = page.eval_on_selector_all("#results .result img", "ns => ns.map(n => n.getAttribute('src'))")
            bad = [s for s in sources if not re.fullmatch(r"/v1/thumbnails/\d+", s or "")]
            check(not bad, f"thumbnails not from /v1/thumbnails/N: {bad[:3]}")
            alts = page.eval_on_selector_all("#results .result img", "ns => ns.filter(n => !n.alt).length")
            check(alts == 0, "a result thumbnail has no alt text")

            # 5. the image: labels from /v1/classify, neighbours from /v1/search
            at("uploading the image")
            name = os.path.basename(args.image)
            with page.expect_response(lambda r: urlsplit(r.url).path == "/v1/classify") as classified, \
                    page.expect_response(lambda r: urlsplit(r.url).path == "/v1/search") as neighbours:
                page.set_input_files("#file-input", args.image)
            expect_ok(classified.value, "/v1/classify")
            expect_ok(neighbours.value, "image /v1/search")
            at("waiting for #labels and the image's neighbours")
            page.wait_for_function("() => document.querySelectorAll('#labels li:not(.hint)').length >= 1")
            page.wait_for_function("(name) => document.querySelector('#results-heading').textContent.includes(name)", arg=name)
            page.wait_for_function(f"() => ({LOADED_IMAGES_JS})() >= 1")
            check(page.locator("#error").is_hidden(), f"#error shows: {page.locator('#error').inner_text()}")
            summary["labels"] = page.eval_on_selector_all("#labels li:not(.hint)", "ns => ns.map(n => n.textContent.replace(/\\s+/g, ' ').trim())")
            summary["image_results"] = page.locator("#results .result").count()
            summary["image_images_loaded"] = page.evaluate(LOADED_IMAGES_JS)
            check(page.locator("#image-preview").evaluate("i => i.complete && i.naturalWidth > 0"),
                  "the uploaded image's preview did not load")
            # let the metrics panel catch up with these requests before the picture
            page.wait_for_timeout(3500)
            page.screenshot(path=args.screenshot, full_page=True)
            summary["screenshot"] = os.path.abspath(args.screenshot)

            # 6. "More like this" on the first card: its thumbnail searched as an image
            at("more like this")
            first = page.locator("#results .result").first
            key = first.locator(".key").inner_text()
            with page.expect_response(lambda r: urlsplit(r.url).path == "/v1/search") as more:
                first.locator("button.more").click()
            expect_ok(more.value, "more like this")
            page.wait_for_function("(key) => document.querySelector('#results-heading').textContent.includes(key)", arg=key)
            page.wait_for_function(f"() => ({LOADED_IMAGES_JS})() >= 1")
            summary["more_like_this_results"] = page.locator("#results .result").count()

            # 7. nothing went wrong on the way
            violations = page.evaluate("() => window.__cspViolations")
            check(not violations, f"CSP violations: {violations}")
        except CheckFailed as e:
            failures.append(str(e))
        except PlaywrightError as e:
            failures.append(f"{step[0]}: {str(e).splitlines()[0]}")
        finally:
            if "screenshot" not in summary:
                try:
                    page.screenshot(path=args.screenshot, full_page=True)
                    summary["screenshot"] = os.path.abspath(args.screenshot)
                except PlaywrightError:
                    pass
            browser.close()

    if off_origin:
        failures.append(f"requests left the origin: {off_origin[:5]}")
    if page_errors:
        failures.append(f"page errors: {page_errors[:5]}")
    if console_errors:
        failures.append(f"console errors: {console_errors[:5]}")
    summary.update({
        "requests": len(requests), "off_origin": off_origin, "page_errors": page_errors,
        "console_errors": console_errors, "seconds": round(time.monotonic() - started, 2),
        "failures": failures, "ok": not failures,
    })
    print(json.dumps(summary), flush=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
