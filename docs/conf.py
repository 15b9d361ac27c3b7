"""Sphinx configuration for the hadamard-lite website (build it with `python docs/build.py`).

The site is built from the repository's own files, where they live: the README is the home
page, every notebook under `notebooks/` (and `notebooks/student/`, where it exists) is a page
rendered from its stored outputs, the results files are pages, and `docs/api.md` holds the API
reference from the docstrings. The source folder is the repository root, so the README's and
the notebooks' relative links (`notebooks/02_hadamard_math.ipynb`, `results/...`) work on the
site as they do on a code host. Nothing is fetched from the network, at build or view time.
"""
import glob
import html
import json
import os
import pkgutil
import shutil
import sys

from docutils import nodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # autodoc documents this checkout's package, not an installed copy

project = "hadamard-lite"
author = "hadamard-lite contributors"
copyright = "hadamard-lite contributors, MIT licence"
root_doc = "README"  # copied to index.html when the build finishes (see setup below)

extensions = [
    "myst_nb",                 # notebooks and Markdown (MyST) pages
    "sphinx.ext.autodoc",      # the API reference, from the docstrings
    "sphinx.ext.viewcode",     # "[source]" links to the highlighted module source
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/, so math renders without a CDN
    "sphinx.ext.githubpages",  # writes .nojekyll, so GitHub Pages serves the _static/ and _images/ folders
]

# Only these files are pages; everything else in the repository (tests, runs/, the site itself) is not.
include_patterns = [
    "README.md",
    "notebooks/*.ipynb",
    "notebooks/student/*.ipynb",
    "results/*.md",
    "results/*/results.md",
    "docs/*.md",
]
exclude_patterns = ["site/**", "build/**", "**/.ipynb_checkpoints/**"]

# Notebooks are executed and tested by nbval already; the site shows their stored outputs.
nb_execution_mode = "off"
# tqdm progress bars are widget outputs whose live view needs JavaScript from a CDN; the site shows
# each bar's final state as text instead (see _progress_bars_as_text) and loads no widget JavaScript.
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # README links such as `#notebooks` resolve to the heading

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"  # fonts are the system's: no web-font fetch
html_title = "hadamard-lite"
html_show_sourcelink = False
html_copy_source = False
smartquotes = False  # keep `--task` and quotes in docstrings and text as written


def _pages(pattern):
    """Document names (no suffix) of the files matching a glob pattern, sorted."""
    return [os.path.splitext(p)[0] for p in sorted(glob.glob(pattern, root_dir=ROOT))]


def _toctree(caption, docs):
    if not docs:
        return ""
    return "\n```{toctree}\n:hidden:\n:caption: " + caption + "\n\n" + "\n".join(docs) + "\n```\n"


def _add_navigation(app, docname, source):
    """Give the home page its table of contents and the API page its modules, from what exists.

    A new notebook (07_..., 08_..., a student version) or a new module appears on the site without
    anyone editing a list; the README itself stays free of Sphinx-only markup.
    """
    if docname == root_doc:
        source[0] += _toctree("Notebooks", _pages("notebooks/[0-9]*.ipynb"))
        source[0] += _toctree("Student versions", _pages("notebooks/student/[0-9]*.ipynb"))
        source[0] += _toctree("Measured results", _pages("results/*.md") + _pages("results/*/results.md"))
        source[0] += _toctree("Reference", ["docs/api"])
    elif docname == "docs/api":
        import hadamard_lite
        for module in sorted(m.name for m in pkgutil.iter_modules(hadamard_lite.__path__)):
            # autodoc writes reStructuredText, so the directive runs inside an eval-rst block.
            source[0] += f"\n## `hadamard_lite.{module}`\n\n```{{eval-rst}}\n.. automodule:: hadamard_lite.{module}\n```\n"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _progress_bars_as_text(notebook_json):
    """A notebook's tqdm widgets as the text of their final state: "epoch 1/2: 100%|##########| 63/63 [...]".

    A widget output also stores a plain-text fallback, but that is the bar when it was created (0%),
    which would tell a reader the training never ran.
    """
    notebook = json.loads(notebook_json)
    state = notebook.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def model(ref):
        return state.get(ref.removeprefix("IPY_MODEL_"), {}).get("state", {})

    def text(widget):
        parts = []
        for child in map(model, widget.get("children", [])):
            if "max" in child:  # the bar itself
                done = round(10 * child.get("value", 0) / (child["max"] or 1))
                parts.append("|" + "#" * done + " " * (10 - done) + "|")
            else:
                parts.append(html.unescape(child.get("value", "")).replace("\u2007", " ").strip())
        return " ".join(p for p in parts if p)

    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            view = output.get("data", {}).pop(WIDGET_VIEW, None)
            final = text(model(view.get("model_id", ""))) if view else ""
            if final:
                output["data"]["text/plain"] = final
    return json.dumps(notebook)


def _notebook_source(app, docname, source):
    if app.env.doc2path(docname).suffix == ".ipynb":
        source[0] = _progress_bars_as_text(source[0])


def _drop_remote_images(app, doctree, docname):
    """Show a remote image (the notebooks' "Open in Colab" badge) as its alt text.

    The link around it stays; only the image would be a fetch from the internet when a page is viewed.
    """
    for image in list(doctree.findall(nodes.image)):
        if image["uri"].startswith(("http://", "https://", "//")):
            image.replace_self(nodes.inline(text=image.get("alt", "") or image["uri"]))


def _markup_errors_as_text(app, doctree, docname):
    """Show text that docutils could not parse (say `|x|` in a plain-text docstring) as it was written.

    Docutils links such text to an error message that Sphinx leaves out of the page: a broken link.
    The build still lists the error (see docs/build.py).
    """
    for node in list(doctree.findall(nodes.problematic)):
        node.replace_self(nodes.inline(node.astext(), node.astext(), ids=node["ids"]))


def _write_index(app, exception):
    """The home page is README.html; a copy named index.html is what a web server serves at /."""
    if exception is None and app.builder.format == "html":
        shutil.copyfile(os.path.join(app.outdir, "README.html"), os.path.join(app.outdir, "index.html"))


def setup(app):
    app.connect("source-read", _add_navigation)
    app.connect("source-read", _notebook_source)
    app.connect("doctree-resolved", _drop_remote_images)
    app.connect("doctree-resolved", _markup_errors_as_text)
    app.connect("build-finished", _write_index)
