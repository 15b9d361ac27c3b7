"""The ``predict`` command: many tasks' adapters on one backbone, examples from JSON lines.

    python -m hadamard_lite predict --adapter sst2=runs/sst2 --adapter stsb=runs/stsb \\
        --input examples.jsonl --output predictions.jsonl

Each input line is a JSON object: ``{"task": "sst2", "text": "..."}``, with ``"text_pair"`` for
pair tasks (STS-B, MRPC, RTE, ...). Each output line, in input order, is
``{"line": N, "task": ..., "label": "positive"}``, or ``"score"`` for regression (STS-B). The
whole input is checked before the model loads: a bad line stops the command with one error
line naming it, exit status 2, and no output. ``--output`` is written atomically.
"""
import json
import sys
from pathlib import Path


class InputError(ValueError):
    """Bad command-line input: reported as one line, exit status 2."""


def parse_adapters(pairs: list) -> dict:
    """``["sst2=runs/sst2", ...]`` -> ``{"sst2": Path("runs/sst2")}``."""
    adapters = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name or not folder:
            raise InputError(f"--adapter {pair!r}: expected NAME=FOLDER, e.g. --adapter sst2=runs/sst2")
        if name in adapters:
            raise InputError(f"--adapter {name}= given twice; give each task once")
        adapters[name] = Path(folder)
    return adapters


def glue_task_of(name: str, folder: Path):
    """The GLUE task an adapter was trained on: from the run summary ``train`` writes beside it,
    else from its name. Needed for label names and to know which tasks take a text pair."""
    from .glue_tasks import GLUE_TASKS, get_task

    summary = folder / "run_summary.json"
    if summary.is_file():
        try:
            return get_task(json.loads(summary.read_text())["task"])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable summary: fall back to the name
    key = name.lower().replace("-", "")
    if key in GLUE_TASKS:
        return GLUE_TASKS[key]
    raise InputError(f"cannot tell which GLUE task adapter {name!r} ({folder}) is for: name it after one "
                     f"({', '.join(GLUE_TASKS)}), or keep the run_summary.json that 'train' writes beside it")


def read_examples(lines, tasks: dict, source: str) -> list:
    """Parse and check every line; the first bad one raises InputError naming it."""
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline) carry no example
        where = f"{source} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: not valid JSON ({err.msg}); each line must be one JSON object") from None
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected a JSON object like {{\"task\": \"sst2\", \"text\": \"...\"}}")
        task = item.get("task")
        if task not in tasks:
            raise InputError(f"{where}: unknown task {task!r}; the --adapter tasks are {', '.join(tasks)}")
        glue = tasks[task]
        for field in ("text", "text_pair") if glue.is_pair else ("text",):
            if not isinstance(item.get(field), str):
                raise InputError(f"{where}: task {task!r} needs a string {field!r}"
                                 + (" (it is a sentence-pair task)" if field == "text_pair" else ""))
        if not glue.is_pair and "text_pair" in item:
            raise InputError(f"{where}: task {task!r} takes one sentence; remove 'text_pair'")
        examples.append((number, task, item["text"], item.get("text_pair")))
    if not examples:
        raise InputError(f"{source} holds no examples")
    return examples


def predict_examples(mt, tokenizer, examples: list, tasks: dict, batch_size=32, max_length=128) -> list:
    """One output dict per example, in input order.

    Encoded as the trainer encodes (``data.encode``: input ids and attention mask, no token
    type ids), so predictions match what ``evaluate`` measures; batches group similar lengths.
    """
    import torch

    from .data import pad_ids

    device = next(mt.parameters()).device
    ids = [tokenizer(text, pair, truncation=True, max_length=max_length)["input_ids"] for _, _, text, pair in examples]
    order = sorted(range(len(examples)), key=lambda i: len(ids[i]))
    pad = tokenizer.pad_token_id or 0
    results = [None] * len(examples)
    for start in range(0, len(order), batch_size):
        group = order[start:start + batch_size]
        input_ids, mask = pad_ids([ids[i] for i in group], pad)
        names = [examples[i][1] for i in group]
        with torch.inference_mode():
            logits = mt(input_ids.to(device), mask.to(device), tasks=names)
        for i, row in zip(group, logits):
            number, task = examples[i][:2]
            glue = tasks[task]
            if glue.is_regression:
                results[i] = {"line": number, "task": task, "score": round(row.float().item(), 6)}
            else:
                results[i] = {"line": number, "task": task, "label": glue.labels[int(row.argmax())]}
    return results


def run(args) -> int:
    import hadamard_lite as hl
    from .adapter_files import atomic_write, read_adapter_config
    from .multitask import adapter_base_model
    from .trainer import pick_device

    try:
        adapters = parse_adapters(args.adapter)
        configs = {name: read_adapter_config(folder) for name, folder in adapters.items()}
        tasks = {name: glue_task_of(name, folder) for name, folder in adapters.items()}
        for name, glue in tasks.items():
            if configs[name].get("num_labels") != glue.num_labels:
                raise InputError(f"adapter {name!r} has {configs[name].get('num_labels')} outputs, but GLUE task "
                                 f"{glue.name!r} has {glue.num_labels}; is it the right folder?")
        if args.output and not Path(args.output).parent.is_dir():
            raise InputError(f"--output {args.output}: folder {Path(args.output).parent} does not exist")
        source = args.input
        try:
            lines = sys.stdin.read().splitlines() if source == "-" else Path(source).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read --input {source}: {err}") from None
        examples = read_examples(lines, tasks, "stdin" if source == "-" else source)
        mt = hl.MultiTaskModel.from_adapters(adapters).to(pick_device(args.device))
    except (InputError, ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tokenizer = hl.load_tokenizer(adapter_base_model(next(iter(configs.values()))))
    results = predict_examples(mt, tokenizer, examples, tasks, args.batch_size, args.max_length)
    text = "".join(json.dumps(r) + "\n" for r in results)
    if args.output:
        atomic_write(Path(args.output), lambda tmp: Path(tmp).write_text(text))
        print(f"{len(results)} predictions for {len(set(r['task'] for r in results))} task(s) written to {args.output}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_predict_command(commands, parents=()) -> None:
    """Register ``predict`` on the command line's subparsers."""
    p = commands.add_parser("predict", parents=list(parents), help="run several tasks' adapters on one model over JSON lines")
    p.add_argument("--adapter", action="append", required=True, metavar="NAME=FOLDER",
                   help="a task and its adapter folder (repeat for each task), e.g. sst2=runs/sst2")
    p.add_argument("--input", required=True, help="JSON lines: task, text, and text_pair for pair tasks ('-': stdin)")
    p.add_argument("--output", default=None, help="where to write the predictions (default: stdout)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.set_defaults(run=run)
