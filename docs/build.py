"""Build the website from the repository's own files into `site/`, offline.

Usage (from the repository root):

    python docs/build.py              # writes site/, then open site/index.html or serve it
    python docs/build.py --out DIR    # somewhere else (the browser test builds into a temporary folder)

It runs Sphinx with the configuration in `docs/conf.py`: the notebooks are shown with their stored
outputs (nothing is executed), and any Sphinx warning (a link to a page that does not exist, a
docstring that does not parse) fails the build, so a broken site never looks like a good one.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(out: str) -> int:
    """Build the site into `out`; returns the number of HTML pages written."""
    from sphinx.cmd.build import build_main

    out = os.path.abspath(out)
    if os.path.exists(out):
        # Rebuild from scratch so a removed notebook leaves no stale page behind, but never
        # delete a folder that is not a previous build.
        if not os.path.isfile(os.path.join(out, ".buildinfo")):
            raise SystemExit(f"error: {out} exists and is not a site built by this script; choose another --out")
        shutil.rmtree(out)
    # Sphinx's notebook extension writes the figures it extracts beside the output folder
    # (`<out>/../jupyter_execute`), so the build happens in a scratch folder and is moved to `out`.
    with tempfile.TemporaryDirectory(prefix="hadamard-lite-site-") as scratch:
        html = os.path.join(scratch, "html")
        args = [
            "-b", "html", "-q",          # quiet: only warnings and errors are printed
            "-W", "--keep-going",        # every warning is listed, then the build fails
            "-c", os.path.join(ROOT, "docs"),
            "-d", os.path.join(scratch, "doctrees"),
            ROOT, html,
        ]
        if build_main(args) != 0:
            raise SystemExit("error: the site build failed; the Sphinx warnings above say where")
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
