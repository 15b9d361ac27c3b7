"""Render the README's result tables from the committed results files, so numbers cannot drift.

    python benchmarks/readme_tables.py            # rewrite the README's marked blocks
    python benchmarks/readme_tables.py --check    # exit 1 if the README differs (a test runs this)

A block sits between `<!-- BEGIN results/NAME -->` and `<!-- END results/NAME -->`; its content is
taken from `results/NAME/results.md`: the first table and, for speed files, the list of ratios.
"""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- BEGIN (results/[\w.-]+) -->\n)(.*?)(<!-- END \2 -->)", re.S)


def first_table(text: str) -> list:
    lines, out = text.splitlines(), []
    for line in lines:
        if line.startswith("|"):
            out.append(line)
        elif out:
            break
    return out


def ratios(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("- ")]


def render(name: str) -> str:
    path = ROOT / name / "results.md"
    if not path.is_file():
        raise SystemExit(f"README names {name}, but {path} does not exist; run the command that writes it")
    text = path.read_text()
    body = first_table(text) + ([""] + ratios(text) if ratios(text) else [])
    return "\n".join(body) + f"\n\n(From [`{name}/results.md`]({name}/results.md), which names the command, machine, threads and precision.)\n"


def rendered_readme() -> tuple:
    readme = (ROOT / "README.md").read_text()
    new = BLOCK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), readme)
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
