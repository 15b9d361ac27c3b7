"""Command line.

    python -m hadamard_lite demo     # inject adapters into the bundled MiniLM and check the basics
"""
import argparse
import sys


def demo(args) -> int:
    import torch
    import hadamard_lite as hl

    model = hl.load_model(args.model, num_labels=2).eval()
    tokenizer = hl.load_tokenizer(args.model)
    batch = tokenizer(["a gripping, beautifully acted film.", "the plot never comes together."],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
        hl.add_hadamard_adapter(model)
        after = model(**batch).logits
    hl.freeze_for_stage(model, "adapter")
    print(f"model: {args.model or hl.DEFAULT_MODEL} ({model.config.model_type}, "
          f"{len(hl.adapted_layers(model))} adapted layers, hidden size {model.config.hidden_size})")
    hl.print_trainable_parameters(model)
    diff = (after - before).abs().max().item()
    print(f"identity at start: max |adapted - original| = {diff} -> {'OK' if diff == 0 else 'FAILED'}")
    return 0 if diff == 0 else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hadamard_lite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="inject adapters into a pre-trained model and check identity at start")
    p.add_argument("--model", default=None, help="hub id or local folder (default: the bundled MiniLM)")
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
