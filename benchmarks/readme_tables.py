"""Render the README's result tables from the committed results files, so numbers cannot drift.

    python benchmarks/readme_tables.py            # rewrite the marked blocks of README.md and results/patterns.md
    python benchmarks/readme_tables.py --check    # exit 1 if either differs (a test runs this)

A block sits between `<!-- BEGIN results/NAME -->` and `<!-- END results/NAME -->`; its content is
taken from `results/NAME/results.md`: the first table (`BEGIN results/NAME table=2`: the second;
`table=0`: none) and the file's list (its lines that start with "- ": ratios, or conclusions), if it has one
(`BEGIN results/NAME table=3 list=no`: the table alone, for a second block from the same file).
"""
import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOSTS = ["README.md", "results/patterns.md"]  # the files with marked blocks
BLOCK = re.compile(r"(<!-- BEGIN (results/[\w.-]+)(?: table=(\d+))?( list=no)? -->\n)(.*?)(<!-- END \2 -->)", re.S)


def nth_table(text: str, n: int = 1) -> list:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables[n - 1] if len(tables) >= n else []


def ratios(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("- ")]


def render(name: str, table: int = 1, host: str = "README.md", with_list: bool = True) -> str:
    path = ROOT / name / "results.md"
    if not path.is_file():
        raise SystemExit(f"{host} names {name}, but {path} does not exist; run the command that writes it")
    text = path.read_text()
    body = (nth_table(text, table) if table else []) + ([""] + ratios(text) if with_list and ratios(text) else [])
    body = body[1:] if not table and body else body
    link = Path(os.path.relpath(path, (ROOT / host).parent)).as_posix()
    return "\n".join(body) + f"\n\n(From [`{name}/results.md`]({link}), which names the command, machine, threads and precision.)\n"


def rendered(host: str) -> tuple:
    old = (ROOT / host).read_text()
    new = BLOCK.sub(lambda m: m.group(1) + render(m.group(2), int(m.group(3) if m.group(3) is not None else 1), host,
                                                  with_list=not m.group(4)) + m.group(6), old)
    return old, new


def rendered_readme() -> tuple:
    return rendered("README.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for host in HOSTS:
        old, new = rendered(host)
        if old != new:
            stale.append(host)
            if not args.check:
                (ROOT / host).write_text(new)
        if not args.check:
            print(f"{host}: rendered {len(BLOCK.findall(new))} blocks")
    if args.check and stale:
        print(f"{', '.join(stale)}: result tables differ from results/*: run python benchmarks/readme_tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
