"""Build the website from the repository's own files into `site/`, offline.

Usage (from the repository root):

    python docs/build.py              # writes site/, then open site/index.html or serve it
    python docs/build.py --out DIR    # somewhere else (the browser test builds into a temporary folder)

It runs Sphinx with the configuration in `docs/conf.py`: the notebooks are shown with their stored
outputs (nothing is executed). A Sphinx warning (a link to a page that does not exist, a notebook
that cannot be read) fails the build, so a broken site never looks like a good one; a docstring that
is not valid reStructuredText is listed but does not fail it (its unparsed text is shown as written).
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The first line of each warning in Sphinx's warning file: "path:line: WARNING: message", or no location.
WARNING_START = re.compile(r"^(?:\S[^\n]*?: )?(?:WARNING|ERROR|CRITICAL|SEVERE): [^\n]*", re.MULTILINE)


def build(out: str) -> int:
    """Build the site into `out`; returns the number of HTML pages written."""
    from sphinx.cmd.build import build_main

    out = os.path.abspath(out)
    # The new build replaces the old one whole (a removed notebook leaves no stale page), and only once
    # it succeeded; a folder that is not a previous build is never deleted.
    if os.path.exists(out) and not os.path.isfile(os.path.join(out, ".buildinfo")):
        raise SystemExit(f"error: {out} exists and is not a site built by this script; choose another --out")
    # Sphinx's notebook extension writes the figures it extracts beside the output folder
    # (`<out>/../jupyter_execute`), so the build happens in a scratch folder and is moved to `out`.
    with tempfile.TemporaryDirectory(prefix="hadamard-lite-site-") as scratch:
        html, log = os.path.join(scratch, "html"), os.path.join(scratch, "warnings.log")
        args = [
            "-b", "html", "-q",          # quiet: only warnings and errors are printed
            "-w", log,                   # ... and kept, to sort them below
            "-c", os.path.join(ROOT, "docs"),
            "-d", os.path.join(scratch, "doctrees"),
            ROOT, html,
        ]
        status = build_main(args)
        with open(log, encoding="utf-8") as f:
            warnings = WARNING_START.findall(f.read())
        docstrings = [w for w in warnings if "docstring of " in w]
        if docstrings:
            print(f"note: {len(docstrings)} docstring warning(s) above: not valid reStructuredText, shown as "
                  "written on the API page; fix them, but they do not fail the build", file=sys.stderr)
        if status != 0:
            raise SystemExit("error: the site build failed: Sphinx stopped with the error above")
        if len(warnings) > len(docstrings):
            raise SystemExit(f"error: the site build failed: {len(warnings) - len(docstrings)} warning(s) above "
                             "(a link to a missing page, a notebook Sphinx cannot read) say where")
        if os.path.exists(out):
            shutil.rmtree(out)
        shutil.move(html, out)
    return sum(name.endswith(".html") for _, _, files in os.walk(out) for name in files)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "site"), help="output folder (default: site/)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    pages = build(args.out)
    print(f"built {pages} pages into {os.path.relpath(os.path.abspath(args.out))} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
