"""Render the README's result tables from the committed results files, so numbers cannot drift.

    python benchmarks/readme_tables.py            # rewrite the README's marked blocks
    python benchmarks/readme_tables.py --check    # exit 1 if the README differs (a test runs this)

A block sits between `<!-- BEGIN results/NAME -->` and `<!-- END results/NAME -->`; its content is
taken from `results/NAME/results.md`: the first table (`BEGIN results/NAME table=2`: the second;
`table=0`: none) and the file's list (its lines that start with "- ": ratios, or conclusions), if it has one.
"""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- BEGIN (results/[\w.-]+)(?: table=(\d+))? -->\n)(.*?)(<!-- END \2 -->)", re.S)


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


def render(name: str, table: int = 1) -> str:
    path = ROOT / name / "results.md"
    if not path.is_file():
        raise SystemExit(f"README names {name}, but {path} does not exist; run the command that writes it")
    text = path.read_text()
    body = (nth_table(text, table) if table else []) + ([""] + ratios(text) if ratios(text) else [])
    body = body[1:] if not table and body else body
    return "\n".join(body) + f"\n\n(From [`{name}/results.md`]({name}/results.md), which names the command, machine, threads and precision.)\n"


def rendered_readme() -> tuple:
    readme = (ROOT / "README.md").read_text()
    new = BLOCK.sub(lambda m: m.group(1) + render(m.group(2), int(m.group(3) if m.group(3) is not None else 1)) + m.group(5), readme)
    return readme, new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    old, new = rendered_readme()
    if args.check:
        if old != new:
            print("README.md's result tables differ from results/*: run python benchmarks/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    (ROOT / "README.md").write_text(new)
    print(f"rendered {len(BLOCK.findall(new))} blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
