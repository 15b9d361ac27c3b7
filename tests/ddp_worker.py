"""Run by test_trainer.py under torchrun: two CPU processes (gloo) train one adapter."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.data import load_glue  # noqa: E402
from hadamard_lite.trainer import TrainConfig, Trainer, _distributed  # noqa: E402
from test_trainer import small_bert  # noqa: E402

rank, world = _distributed()
torch.set_num_threads(1)
model = small_bert()
hl.add_hadamard_adapter(model)
hl.freeze_for_stage(model, "adapter", train_head=True)
train = load_glue("sst2", "train", source="sample", limit=128)
Trainer(model, hl.load_tokenizer(), train, None, TrainConfig(epochs=1, lr=1e-2, batch_size=16, progress=False)).fit()
state = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
torch.save({"world": world, "state": state}, Path(sys.argv[1]) / f"rank{rank}.pt")
