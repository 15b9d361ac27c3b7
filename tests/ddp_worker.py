"""Run by test_trainer.py under torchrun: two CPU processes (gloo) train one adapter."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.data import load_glue  # noqa: E402
from hadamard_lite.trainer import TrainConfig, Trainer, _distributed  # noqa: E402

DDP_SETUP = {"examples": 128, "batch_size": 16}  # per process; the test's single process uses the same

if __name__ == "__main__":
    from test_trainer import adapted_bert
    rank, world = _distributed()
    torch.set_num_threads(1)
    model = adapted_bert(dropout=0.0)  # dropout draws differ between 2 processes and 1: off in both
    train = load_glue("sst2", "train", source="sample", limit=DDP_SETUP["examples"])
    Trainer(model, hl.load_tokenizer(), train, None,
            TrainConfig(epochs=1, lr=1e-2, batch_size=DDP_SETUP["batch_size"], device="cpu", precision="fp32",
                        progress=False)).fit()
    state = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    torch.save({"world": world, "state": state}, Path(sys.argv[1]) / f"rank{rank}.pt")
