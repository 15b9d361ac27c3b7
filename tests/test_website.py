"""The website, built and then checked in a real browser (headless Chromium from Debian's packages).

    python -m pytest tests/test_website.py -v -s     # -s prints the build time and what was checked

The site is built with `python docs/build.py` into a temporary folder (set HADAMARD_LITE_SITE=site to
check a build you made instead), served from a local HTTP server on 127.0.0.1, and every page is
opened in Chromium driven by Playwright. Needs the `docs` extra (`pip install -e ".[docs]"`) and
`apt-get install -y chromium`; where either is missing, the browser tests skip and say which.
"""
import glob
import html
import http.server
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A built site: HADAMARD_LITE_SITE if set, else a fresh build of this checkout."""
    if os.environ.get("HADAMARD_LITE_SITE"):
        built = Path(os.environ["HADAMARD_LITE_SITE"]).resolve()
        assert (built / "index.html").is_file(), f"HADAMARD_LITE_SITE={built} has no index.html; run python docs/build.py"
        return built
    for module in ("sphinx", "myst_nb", "furo"):
        pytest.importorskip(module, reason=f"the site build needs {module}: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("website") / "site"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"python docs/build.py failed:\n{run.stdout}\n{run.stderr}"
    print(f"\nsite build: {time.perf_counter() - start:.1f} s ({run.stdout.strip()})")
    return out


def html_pages(site: Path) -> list:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))


def notebook_image_outputs(path: Path) -> int:
    """How many image outputs (PNG, JPEG, SVG, GIF) a notebook has stored."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return sum(any(mime.startswith("image/") for mime in output.get("data", {}))
               for cell in cells for output in cell.get("outputs", []))


# ---------------------------------------------------------------- the build itself, no browser needed

def test_every_source_file_has_a_page(site):
    expected = {"index.html", "README.html", "docs/api.html"}
    for pattern in ("notebooks/*.ipynb", "notebooks/student/*.ipynb", "results/*.md", "results/*/results.md"):
        expected |= {str(Path(p).with_suffix(".html")) for p in glob.glob(pattern, root_dir=ROOT)}
    missing = sorted(p for p in expected if not (site / p).is_file())
    assert not missing, f"no page for: {missing}"
    assert len([p for p in expected if p.startswith("notebooks/")]) >= 6


def test_api_reference_documents_every_module(site):
    import hadamard_lite
    api = (site / "docs" / "api.html").read_text(encoding="utf-8")
    modules = [m.name for m in pkgutil.iter_modules(hadamard_lite.__path__)]
    missing = [m for m in modules if f'id="module-hadamard_lite.{m}"' not in api]
    assert not missing, f"API reference lacks modules {missing}"
    # Docstrings were rendered, not just headings: e.g. the adapter class and the stage function.
    assert 'id="hadamard_lite.adapter.HadamardAdapter"' in api
    assert 'id="hadamard_lite.freezing.freeze_for_stage"' in api


# A tag attribute that makes the browser fetch something by itself (links <a href> are only followed on a click).
FETCHING_ATTRIBUTE = re.compile(
    r"<(script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?\b(src|href|data|srcset)=[\"']?\s*((?:https?:)?//[^\"'\s>]+)",
    re.IGNORECASE)
CSS_REMOTE = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"'])((?:https?:)?//[^\"')\s]+)", re.IGNORECASE)


def test_no_page_or_stylesheet_fetches_from_the_internet(site):
    """Offline classroom: nothing a page loads by itself comes from another host (a CDN, web fonts)."""
    remote = []
    for path in site.rglob("*.html"):
        remote += [f"{path.relative_to(site)}: <{m.group(1)} {m.group(2)}={m.group(3)}>"
                   for m in FETCHING_ATTRIBUTE.finditer(path.read_text(encoding="utf-8"))]
    for path in site.rglob("*.css"):
        remote += [f"{path.relative_to(site)}: {m.group(1)}" for m in CSS_REMOTE.finditer(path.read_text(encoding="utf-8"))]
    assert not remote, "remote resources:\n" + "\n".join(remote)
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not bundled into _static/"


# ---------------------------------------------------------------- in the browser

def find_chromium():
    for candidate in (os.environ.get("CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    """The built folder on http://127.0.0.1:<free port>/."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# Run in the page once it has loaded: wait for every image to decode and MathJax to typeset, then report.
INSPECT_PAGE = """async () => {
    await Promise.all(Array.from(document.images, img => img.decode().catch(() => null)));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
    const main = document.querySelector('[role=main], main, article');
    const math = Array.from(document.querySelectorAll('.math'));
    return {
        mainText: main ? main.innerText.trim().length : 0,
        images: Array.from(document.images, img => ({src: img.currentSrc || img.src,
                                                      ok: img.complete && img.naturalWidth > 0})),
        figures: Array.from(document.querySelectorAll('.cell_output img')).filter(
            img => img.complete && img.naturalWidth > 0).length,
        math: math.length,
        mathTypeset: math.filter(el => el.querySelector('mjx-container')).length,
        mathErrors: document.querySelectorAll('mjx-merror').length,
        links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
    };
}"""


@pytest.fixture(scope="module")
def visits(site, served):
    """Open every page of the site in headless Chromium; what each page showed, and what went wrong."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser check needs Playwright: pip install -e '.[docs]'")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("the browser check needs Chromium: apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)")
    pages, outside, start = {}, [], time.perf_counter()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        context = browser.new_context()

        def route(request_route):
            # Any request to another host is a fetch that would fail in an offline classroom: refuse and record it.
            if request_route.request.url.startswith(served):
                request_route.continue_()
            else:
                outside.append(request_route.request.url)
                request_route.abort()

        context.route("**/*", route)
        for path in html_pages(site):
            page = context.new_page()
            record = {"errors": [], "failed": []}
            page.on("console", lambda msg, r=record: msg.type == "error" and r["errors"].append(msg.text))
            page.on("pageerror", lambda exc, r=record: r["errors"].append(f"uncaught: {exc}"))
            page.on("requestfailed", lambda req, r=record: r["failed"].append(f"{req.url} ({req.failure})"))
            page.on("response", lambda resp, r=record: resp.status >= 400 and r["failed"].append(f"{resp.url} ({resp.status})"))
            # The search page is empty until it is asked something: ask, and wait for its results.
            query = "?q=adapter" if path == "search.html" else ""
            response = page.goto(served + path + query, wait_until="load", timeout=60_000)
            record["status"] = response.status if response else None
            if query:
                try:
                    page.wait_for_function("document.querySelectorAll('#search-results li').length > 0", timeout=30_000)
                except sync_api.TimeoutError:
                    record["errors"].append("search for 'adapter' found nothing within 30 s")
            record.update(page.evaluate(INSPECT_PAGE))
            pages[path] = record
            page.close()
        browser.close()
    seconds = time.perf_counter() - start
    images = sum(len(r["images"]) for r in pages.values())
    print(f"\nbrowser check: {len(pages)} pages, {images} images in {seconds:.1f} s ({chromium})")
    return {"pages": pages, "outside": outside}


def test_every_page_answers_200_with_main_text(visits):
    bad = {p: (r["status"], r["mainText"]) for p, r in visits["pages"].items() if r["status"] != 200 or r["mainText"] < 20}
    assert not bad, f"pages with a bad status or an empty main text (status, characters): {bad}"


def test_no_javascript_console_errors(visits):
    errors = {p: r["errors"] for p, r in visits["pages"].items() if r["errors"]}
    assert not errors, f"console errors: {errors}"


def test_no_failed_request_and_nothing_fetched_from_another_host(visits):
    failed = {p: r["failed"] for p, r in visits["pages"].items() if r["failed"]}
    assert not visits["outside"], f"requests to other hosts: {sorted(set(visits['outside']))}"
    assert not failed, f"failed requests: {failed}"


def test_every_image_loads_and_decodes(visits):
    broken = {p: [i["src"] for i in r["images"] if not i["ok"]] for p, r in visits["pages"].items()}
    broken = {p: srcs for p, srcs in broken.items() if srcs}
    assert not broken, f"images that did not load or decode: {broken}"


def test_notebook_pages_show_their_figures(visits):
    checked = 0
    for path in sorted(glob.glob("notebooks/*.ipynb", root_dir=ROOT) + glob.glob("notebooks/student/*.ipynb", root_dir=ROOT)):
        page = visits["pages"][str(Path(path).with_suffix(".html"))]
        expected = notebook_image_outputs(ROOT / path)
        assert page["figures"] >= expected, f"{path}: {page['figures']} figures shown, the notebook has {expected}"
        checked += expected
    assert checked > 0, "no notebook has a figure: the figure check checked nothing"


def test_math_renders(visits):
    with_math = {p: r for p, r in visits["pages"].items() if r["math"]}
    # The API page's formula at least: without it this test would check nothing.
    assert "docs/api.html" in with_math, "no math found on the API page: is dollarmath still enabled?"
    bad = {p: (r["mathTypeset"], r["math"], r["mathErrors"]) for p, r in with_math.items()
           if r["mathTypeset"] < r["math"] or r["mathErrors"]}
    assert not bad, f"math not typeset by MathJax (typeset, formulas, errors): {bad}"


def test_every_internal_link_resolves(visits, served):
    """Every link to this site answers 200, and a link to `page#anchor` finds that id on the page."""
    links = {link for r in visits["pages"].values() for link in r["links"] if link.startswith(served)}
    ids, broken = {}, []
    for link in sorted(links):
        target, _, fragment = link.partition("#")
        if target not in ids:
            try:
                with urllib.request.urlopen(target, timeout=30) as response:
                    body = response.read().decode("utf-8", "replace") if "html" in response.headers.get("Content-Type", "") else ""
                ids[target] = {html.unescape(i) for i in re.findall(r'\b(?:id|name)="([^"]+)"', body)}
            except urllib.error.HTTPError as error:
                ids[target] = None
                broken.append(f"{link} ({error.code})")
                continue
        if fragment and ids[target] is not None and urllib.parse.unquote(fragment) not in ids[target]:
            broken.append(f"{link} (no id {fragment!r} on the page)")
    print(f"\nlinks: {len(links)} internal links to {len(ids)} targets checked")
    assert len(links) > len(visits["pages"]), "suspiciously few links found"
    assert not broken, "broken internal links:\n" + "\n".join(broken)
