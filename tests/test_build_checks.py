"""Notebook 08's check functions accept a correct implementation and reject the plausible wrong ones,
each with a hint that names what is off. The correct versions below are notebook 08's solutions."""
import copy

import pytest
import torch
from torch import nn

from hadamard_lite import exercises


# ---------------------------------------------------------------- correct answers (notebook 08's solutions)

class HadamardAdapter(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x):
        return x * self.weight + self.bias


class HadamardLinear(nn.Module):
    def __init__(self, linear):
        super().__init__()
        self.linear = linear
        self.hadamard = HadamardAdapter(linear.out_features).to(linear.weight.device, linear.weight.dtype)

    def forward(self, x):
        return self.hadamard(self.linear(x))


def add_adapters(model, wrapper=HadamardLinear):
    for layer in model.bert.encoder.layer:
        layer.attention.output.dense = wrapper(layer.attention.output.dense)
    return model


def set_trainable(model, stage, train_head=False):
    model.requires_grad_(False)
    for name, p in model.named_parameters():
        is_head = name.startswith("classifier.")
        is_adapter = "hadamard" in name or "attention.output.LayerNorm" in name
        p.requires_grad_(is_head if stage == "head" else is_adapter or (train_head and is_head))
    return model


# A correct answer to exercise 5 is exactly the loop the check compares against.
train_stage = exercises._reference_stage


def make_two_stage(freeze=set_trainable, inject=add_adapters, train=train_stage, swap_lrs=False, skip_stage_1=False):
    def two_stage(model, batches, head_epochs=1, adapter_epochs=3, head_lr=1e-2, adapter_lr=1e-2, train_head=True):
        if swap_lrs:
            head_lr, adapter_lr = adapter_lr, head_lr
        head_losses = []
        if not skip_stage_1:
            freeze(model, "head")
            head_losses = train(model, batches, head_epochs, head_lr)
        inject(model)
        freeze(model, "adapter", train_head=train_head)
        return head_losses, train(model, batches, adapter_epochs, adapter_lr)
    return two_stage


def verdict(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


# ---------------------------------------------------------------- exercise 1: HadamardAdapter

def test_adapter_check_accepts_the_right_class(capsys):
    for _ in range(3):  # fresh random sizes each call
        ok, out = verdict(exercises.check_hadamard_adapter, HadamardAdapter, capsys)
        assert ok and out.startswith("Correct!")
    assert exercises.check_hadamard_adapter(lambda d: _hl_adapter(d))  # the package's own adapter passes too


def _hl_adapter(d):
    import hadamard_lite as hl
    return hl.HadamardAdapter(d)


def _adapter(init_w=torch.ones, init_b=torch.zeros, forward=None, as_buffers=False, fixed_size=None):
    class Wrong(nn.Module):
        def __init__(self, hidden_size):
            super().__init__()
            d = fixed_size or hidden_size
            if as_buffers:
                self.register_buffer("weight", init_w(d))
                self.register_buffer("bias", init_b(d))
            else:
                self.weight, self.bias = nn.Parameter(init_w(d)), nn.Parameter(init_b(d))

        def forward(self, x):
            return forward(self, x) if forward else x * self.weight + self.bias
    return Wrong


@pytest.mark.parametrize("wrong, hint", [
    (_adapter(init_w=torch.zeros), "weight starts at 0"),
    (_adapter(init_b=torch.ones), "bias starts at 1"),
    (_adapter(init_w=lambda d: torch.full((d,), 0.5)), "weight must start at exactly 1"),
    (_adapter(as_buffers=True), "nn.Parameter"),
    (_adapter(fixed_size=384), "vector of the hidden size"),
    (_adapter(init_w=lambda d: torch.eye(d), forward=lambda self, x: x @ self.weight + self.bias), "not a d x d matrix"),
    (_adapter(init_w=lambda d: torch.ones(1)), "vector of the hidden size"),
    (_adapter(forward=lambda self, x: x * self.weight), "x * weight + bias"),
    (_adapter(forward=lambda self, x: (x + self.bias) * self.weight), "x * weight + bias"),
    (_adapter(forward=lambda self, x: x.detach() * self.weight + self.bias), "flow on to the input"),
    (_adapter(forward=lambda self, x: x * self.weight.data + self.bias.data), "No gradient reached"),
])
def test_adapter_check_rejects_wrong_classes(wrong, hint, capsys):
    ok, out = verdict(exercises.check_hadamard_adapter, wrong, capsys)
    assert not ok and out.startswith("Not yet.") and hint in out, out


def test_checks_let_the_student_version_stub_through():
    class Stub(nn.Module):
        def __init__(self, hidden_size):
            raise NotImplementedError("Exercise 1 not done yet: write __init__")
    with pytest.raises(NotImplementedError, match="Exercise 1 not done yet"):
        exercises.check_hadamard_adapter(Stub)


# ---------------------------------------------------------------- exercise 2: HadamardLinear

def _linear(before=False, copy_linear=False, attribute="hadamard", same_device=True, size="out", drop_bias=False,
            no_adapter=False):
    class Wrong(nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.linear = copy.deepcopy(linear) if copy_linear else linear
            adapter = HadamardAdapter(linear.out_features if size == "out" else linear.in_features)
            if same_device:
                adapter = adapter.to(linear.weight.device, linear.weight.dtype)
            setattr(self, attribute, adapter)

        def forward(self, x):
            adapter = getattr(self, attribute)
            if no_adapter:
                return self.linear(x)
            if before:
                return self.linear(adapter(x))
            projected = x @ self.linear.weight.T if drop_bias else self.linear(x)
            return adapter(projected)
    return Wrong


def test_linear_check_accepts_the_right_class(capsys):
    import hadamard_lite as hl
    for _ in range(3):
        ok, out = verdict(exercises.check_hadamard_linear, HadamardLinear, capsys)
        assert ok, out
    assert exercises.check_hadamard_linear(hl.HadamardLinear)


@pytest.mark.parametrize("wrong, hint", [
    (_linear(before=True, size="in"), "linear.out_features"),
    (_linear(before=True), "Your code raised"),  # right size, wrong place: shapes do not fit on non-square layers
    (_linear(copy_linear=True), "do not copy or rebuild it"),
    (_linear(attribute="adapter"), "named .hadamard"),
    (_linear(same_device=False), "Create it where the layer lives"),
    (_linear(drop_bias=True), "with its bias"),
    (_linear(no_adapter=True), "hadamard(linear(x))"),
])
def test_linear_check_rejects_wrong_classes(wrong, hint, capsys):
    ok, out = verdict(exercises.check_hadamard_linear, wrong, capsys)
    assert not ok and hint in out, out


def test_linear_check_rejects_the_adapter_before_a_square_projection(capsys):
    class BeforeWhenSquare(HadamardLinear):  # passes the non-square cases, wrong on BERT's square projection
        def forward(self, x):
            if self.linear.in_features == self.linear.out_features:
                return self.linear(self.hadamard(x))
            return super().forward(x)
    ok, out = verdict(exercises.check_hadamard_linear, BeforeWhenSquare, capsys)
    assert not ok and "not linear(hadamard(x))" in out, out


# ---------------------------------------------------------------- exercise 3: injection

def _inject(where="attention.output.dense", layers=slice(None), copy_linear=False, new_model=False, wrapper=HadamardLinear):
    def add(model):
        target = copy.deepcopy(model) if new_model else model
        for layer in list(target.bert.encoder.layer)[layers]:
            parent_path, name = where.rsplit(".", 1)
            parent = layer.get_submodule(parent_path)
            linear = getattr(parent, name)
            setattr(parent, name, wrapper(copy.deepcopy(linear) if copy_linear else linear))
        return target
    return add


def _hard_coded_six(model):
    for i in range(6):
        layer = model.bert.encoder.layer[i]
        layer.attention.output.dense = HadamardLinear(layer.attention.output.dense)


def test_injection_check_accepts_the_right_function(capsys):
    import hadamard_lite as hl
    for _ in range(3):
        ok, out = verdict(exercises.check_injection, add_adapters, capsys)
        assert ok, out
    assert exercises.check_injection(hl.add_hadamard_adapter)


class _BeforeProjection(HadamardLinear):
    def forward(self, x):
        return self.linear(self.hadamard(x))


@pytest.mark.parametrize("wrong, hint", [
    (_inject(layers=slice(-1, None)), "Only 1 of this model's"),
    (_hard_coded_six, "Your code raised IndexError"),
    (_inject(where="output.dense"), "the adapter belongs on the attention output projection"),
    (_inject(where="attention.self.value"), "the adapter belongs on the attention output projection"),
    (_inject(copy_linear=True), "own original dense layer"),
    (_inject(new_model=True), "in place"),
    (_inject(wrapper=_BeforeProjection), "before the residual add"),
    (lambda model: None, "No layer's attention.output.dense has a .hadamard adapter"),
])
def test_injection_check_rejects_wrong_functions(wrong, hint, capsys):
    ok, out = verdict(exercises.check_injection, wrong, capsys)
    assert not ok and hint in out, out


# ---------------------------------------------------------------- exercise 4: freezing by name

def _freeze(head=("classifier.",), adapter=("hadamard", "attention.output.LayerNorm"), reset=True,
            use_train_head=True, always_head=False):
    def freeze(model, stage, train_head=False):
        if reset:
            model.requires_grad_(False)
        keys = head if stage == "head" else adapter
        with_head = stage == "adapter" and (always_head or (use_train_head and train_head))
        for name, p in model.named_parameters():
            if any(k in name for k in keys) or (with_head and name.startswith("classifier.")):
                p.requires_grad_(True)
    return freeze


def test_freezing_check_accepts_the_right_function(capsys):
    import hadamard_lite as hl
    for _ in range(3):
        ok, out = verdict(exercises.check_freezing, set_trainable, capsys)
        assert ok, out
    assert exercises.check_freezing(hl.freeze_for_stage)


@pytest.mark.parametrize("wrong, hint", [
    (_freeze(adapter=("hadamard",)), "post-attention LayerNorms frozen"),
    (_freeze(adapter=("hadamard", "LayerNorm")), "match 'attention.output.LayerNorm', not every 'LayerNorm'"),
    (_freeze(head=()), "in stage 1 the classifier head trains"),
    (_freeze(head=("hadamard",)), "in stage 1 the classifier head trains"),
    (_freeze(head=("classifier.", "pooler")), "in stage 1 only the classifier trains"),
    (_freeze(adapter=("attention.output.LayerNorm",)), "left the adapters frozen"),
    (_freeze(reset=False), "every parameter is trainable"),
    (_freeze(use_train_head=False), "with train_head=True the classifier should train"),
    (_freeze(always_head=True), "with train_head=False the classifier should stay frozen"),
    (_freeze(adapter=("hadamard", "attention.output.LayerNorm", "attention.output.dense.linear")), "should stay frozen"),
])
def test_freezing_check_rejects_wrong_functions(wrong, hint, capsys):
    ok, out = verdict(exercises.check_freezing, wrong, capsys)
    assert not ok and hint in out, out


def test_freezing_check_rejects_a_function_that_keeps_the_previous_state(capsys):
    def freeze(model, stage, train_head=False):  # freezes only in stage "head": stale adapters stay trainable
        right = copy.deepcopy(model)
        set_trainable(right, stage, train_head)
        keep = {n for n, p in right.named_parameters() if p.requires_grad}
        if stage == "head":
            model.requires_grad_(False)
        for n, p in model.named_parameters():
            if n in keep:
                p.requires_grad_(True)
    ok, out = verdict(exercises.check_freezing, freeze, capsys)
    assert not ok and "first freeze" in out, out


# ---------------------------------------------------------------- exercise 5: one training stage

def _train(zero_grad=True, decay=0.0, whole_model=False, last_epoch_only=False, shuffle=False, sgd=False):
    def train(model, batches, epochs, lr):
        if whole_model:
            model.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=lr) if sgd else torch.optim.AdamW(params, lr=lr, weight_decay=decay)
        losses = []
        for epoch in range(epochs):
            order = batches[::-1] if shuffle else batches
            losses = [] if last_epoch_only else losses
            for batch in order:
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                if zero_grad:
                    optimizer.zero_grad()
                losses.append(loss.item())
        return losses
    return train


def test_train_stage_check_accepts_the_right_function(capsys):
    for _ in range(3):
        ok, out = verdict(exercises.check_train_stage, train_stage, capsys)
        assert ok, out


@pytest.mark.parametrize("wrong, hint", [
    (_train(zero_grad=False), "optimizer.zero_grad()"),
    (_train(decay=0.01), "weight_decay=0"),
    (_train(whole_model=True), "changed which parameters are trainable"),
    (_train(shuffle=True), "in the given order"),
    (_train(sgd=True), ("AdamW", "did not change")),  # SGD's tiny steps can round away in float32
    (lambda model, batches, epochs, lr: [0.0] * (epochs * len(batches)), "did not change"),
])
def test_train_stage_check_rejects_wrong_functions(wrong, hint, capsys):
    ok, out = verdict(exercises.check_train_stage, wrong, capsys)
    assert not ok and any(h in out for h in ([hint] if isinstance(hint, str) else hint)), out


def test_train_stage_check_wants_every_step_loss(capsys):
    # With one epoch, last-epoch-only is right, so draw until a two-epoch case comes up.
    outs = [verdict(exercises.check_train_stage, _train(last_epoch_only=True), capsys) for _ in range(12)]
    assert any(not ok and "Return the loss of every step" in out for ok, out in outs)
    assert all(ok or "Return the loss of every step" in out for ok, out in outs)


# ---------------------------------------------------------------- exercise 6: the two-stage loop

def test_two_stage_check_accepts_the_right_function(capsys):
    for _ in range(2):
        ok, out = verdict(exercises.check_two_stage, make_two_stage(), capsys)
        assert ok, out


def _whole_model_in_stage_2(model, stage, train_head=False):
    if stage == "adapter":
        model.requires_grad_(True)
    else:
        set_trainable(model, stage, train_head)


def _head_frozen_in_stage_1(model, stage, train_head=False):
    set_trainable(model, "adapter" if stage == "head" else stage, train_head)


def _ignores_train_head(model, stage, train_head=False):
    set_trainable(model, stage, train_head=True)


def _stage_2_with_head_epochs(model, batches, head_epochs=1, adapter_epochs=3, head_lr=1e-2, adapter_lr=1e-2,
                              train_head=True):
    set_trainable(model, "head")
    train_stage(model, batches, head_epochs, head_lr)
    add_adapters(model)
    set_trainable(model, "adapter", train_head=train_head)
    train_stage(model, batches, head_epochs, adapter_lr)


@pytest.mark.parametrize("wrong, hint", [
    (make_two_stage(freeze=_whole_model_in_stage_2), "Stage 2 (train_head=False) trained"),
    (make_two_stage(freeze=_head_frozen_in_stage_1), "stage 1 trains the classifier head alone"),
    (make_two_stage(skip_stage_1=True), "stage 1 trains the classifier head alone"),
    (make_two_stage(inject=lambda model: None), "one adapter per layer"),
    (make_two_stage(freeze=_ignores_train_head), "Stage 2 (train_head=False) trained"),
    (make_two_stage(swap_lrs=True), "which epochs and learning rate each stage gets"),
    (_stage_2_with_head_epochs, "they should take"),
    (make_two_stage(train=_train(decay=0.01)), "which epochs and learning rate each stage gets"),
])
def test_two_stage_check_rejects_wrong_functions(wrong, hint, capsys):
    ok, out = verdict(exercises.check_two_stage, wrong, capsys)
    assert not ok and hint in out, out
