"""Receptive fields: analytic, traced through the network's real graph (torch.fx), and empirical (input gradient).

The analytic field follows each tensor through the traced graph, so a branch and its shortcut each add only what
they do: where branches meet (a residual sum, a concatenation) a unit sees the union of what each input saw.
"""

from __future__ import annotations

import contextlib
import io
import operator
from collections.abc import Collection
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp


@dataclass(frozen=True)
class LayerRF:
    """Receptive field after one spatial layer: `size` input pixels wide, output units `jump` pixels apart,
    the first unit centred on input pixel `start` (negative: it reaches into the padding). `out_size` is the
    output map's width, `out_height` its height."""

    name: str
    kind: str
    kernel: int
    stride: int
    padding: int
    dilation: int
    size: int
    jump: int
    start: float
    out_size: int
    out_height: int = 0


@dataclass
class FieldAnalysis:
    """Everything traced from one backbone: the spatial layers in forward order, the field after every module
    call (BN and activations too, keyed by the call's graph node), the field at the output, or why none."""

    layers: list[LayerRF] = field(default_factory=list)
    calls: dict[str, LayerRF] = field(default_factory=dict)  # fx node name → field after that call
    targets: dict[str, str] = field(default_factory=dict)  # fx node name → module path it calls
    final: LayerRF | None = None
    whole_image: bool = False  # the output's units see every pixel (flattened or globally pooled)
    reason: str | None = None  # why no field can be given (untraceable code, an op cnnlab does not know)


@dataclass(frozen=True)
class _Field:
    size: int
    jump: int
    start: float
    whole: bool = False


# Ops that keep every unit's field (elementwise, normalisation, channel-wise), as modules and as functions.
POINTWISE_MODULES = (
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm2d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.PReLU,
    nn.Softplus,
)
POINTWISE_FUNCTIONS = {
    operator.add,
    operator.iadd,
    operator.mul,
    operator.imul,
    operator.sub,
    operator.truediv,
    operator.neg,
    torch.add,
    torch.mul,
    torch.sub,
    torch.cat,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.clamp,
    F.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.leaky_relu,
    F.elu,
    F.hardswish,
    F.mish,
    F.dropout,
    F.batch_norm,
    F.layer_norm,
    F.group_norm,
}
POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "contiguous", "float", "to", "add", "add_", "mul"}
POINTWISE_METHODS |= {"mul_", "sub", "div", "clone", "type_as"}
WHOLE_IMAGE_FUNCTIONS = {torch.flatten, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
WHOLE_IMAGE_METHODS = {"flatten", "view", "reshape", "mean", "amax", "sum"}
SPATIAL_MODULES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


class _LeafTracer(fx.Tracer):
    """Keep every conv, pool and pointwise module (subclasses too, e.g. a frozen-scale BN) as one graph node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (*SPATIAL_MODULES, *POINTWISE_MODULES)) or super().is_leaf_module(m, qualname)


def _first(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def _square(v) -> bool:
    return not isinstance(v, (tuple, list)) or len(set(v)) == 1


def _module_geometry(module: nn.Module) -> tuple[int, int, int, int] | str:
    """(kernel, stride, left padding, dilation) of a conv or pool, or the reason it cannot be accounted for."""
    if isinstance(module, nn.Conv2d):
        k, s, d, p = module.kernel_size, module.stride, module.dilation, module.padding
        if p == "valid":
            p = 0
        elif p == "same":  # stride 1 only (torch's rule); an odd total puts the extra pixel on the right
            p = _first(d) * (_first(k) - 1) // 2
    else:
        k, p, d = module.kernel_size, module.padding, getattr(module, "dilation", 1)
        s = module.stride if module.stride is not None else module.kernel_size
    if not all(_square(v) for v in (k, s, p, d)):
        return f"{type(module).__name__} with a non-square kernel, stride, padding or dilation"
    return _first(k), _first(s), _first(p), _first(d)


def _function_geometry(node: fx.Node) -> tuple[int, int, int, int] | str | None:
    """Geometry of F.conv2d / F.max_pool2d / F.avg_pool2d calls (as custom modules write them), else None."""
    args = {**dict(enumerate(node.args)), **node.kwargs}
    if node.target is F.conv2d:
        weight = args.get(1, args.get("weight"))
        shape = weight.meta["tensor_meta"].shape if isinstance(weight, fx.Node) else None
        if shape is None:
            return "F.conv2d with a weight the trace cannot see"
        k, s = (shape[-2], shape[-1]), args.get(3, args.get("stride", 1))
        p, d = args.get(4, args.get("padding", 0)), args.get(5, args.get("dilation", 1))
        if p == "valid":
            p = 0
        elif p == "same":
            p = _first(d) * (k[0] - 1) // 2
    elif node.target in (F.max_pool2d, F.avg_pool2d):
        k = args.get(1, args.get("kernel_size"))
        s = args.get(2, args.get("stride")) or k
        p = args.get(3, args.get("padding", 0))
        d = args.get(4, args.get("dilation", 1)) if node.target is F.max_pool2d else 1
    else:
        return None
    if not all(_square(v) for v in (k, s, p, d)):
        return f"{node.target.__name__} with a non-square kernel, stride, padding or dilation"
    return _first(k), _first(s), _first(p), _first(d)


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _union(fields: list[_Field]) -> _Field | str:
    """The field of a unit that sees what each input's unit saw (a sum or concatenation of branches)."""
    if any(f.whole for f in fields):
        return _Field(0, 1, 0.0, whole=True)
    if len({f.jump for f in fields}) > 1:
        return "branches with different strides meet"
    low = min(f.start - (f.size - 1) / 2 for f in fields)
    high = max(f.start + (f.size - 1) / 2 for f in fields)
    return _Field(int(high - low + 1), fields[0].jump, (low + high) / 2)


def traced(features: nn.Module) -> fx.GraphModule:
    """`features` as a torch.fx graph whose nodes are its convs, pools and pointwise modules (raises if untraceable)."""
    return fx.GraphModule(features, _LeafTracer().trace(features))


@torch.no_grad()
def node_outputs(graph_module: fx.GraphModule, x: torch.Tensor, names: set[str]) -> dict[str, torch.Tensor]:
    """Run the traced graph on `x` and keep the outputs of the nodes named in `names` (branches included)."""
    kept: dict[str, torch.Tensor] = {}

    class Keep(fx.Interpreter):
        def run_node(self, n: fx.Node):
            result = super().run_node(n)
            if n.name in names:
                kept[n.name] = result
            return result

    Keep(graph_module).run(x)
    return kept


def trace_fields(features: nn.Module, input_shape: tuple[int, int, int]) -> FieldAnalysis:
    """Trace `features` on one C×H×W input and give the receptive field after every layer (see FieldAnalysis).

    Per conv/pool: r_out = r_in + (k_eff − 1)·j_in, j_out = j_in·s, start_out = start_in + ((k_eff − 1)/2 − p)·j_in,
    with k_eff = d·(k − 1) + 1 (Araujo et al., Distill 2019); output sizes are the traced tensors' own.
    """
    out = FieldAnalysis()
    try:
        graph_module = traced(features)
        was_training = features.training
        features.eval()
        try:
            device = next((p.device for p in features.parameters()), torch.device("cpu"))
            with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints a traceback before it re-raises
                ShapeProp(graph_module).propagate(torch.zeros(1, *input_shape, device=device))
        finally:
            features.train(was_training)
    except Exception as e:  # data-dependent control flow, or an input the module refuses
        cause = e.__cause__ or e
        out.reason = (
            f"its features could not be traced on a {'×'.join(map(str, input_shape))} input "
            f"({type(cause).__name__}: {str(cause).splitlines()[0]})"
        )
        return out
    modules = dict(graph_module.named_modules())
    fields: dict[str, _Field] = {}
    for node in graph_module.graph.nodes:
        inputs = [fields[a.name] for a in node.all_input_nodes if a.name in fields]
        shape = _shape(node)
        if node.op == "placeholder":
            fields[node.name] = _Field(1, 1, 0.0)
            continue
        if node.op == "output":
            result = fields.get(node.all_input_nodes[0].name) if node.all_input_nodes else None
            if result is None:
                out.reason = out.reason or "its output is not traced back to the image"
            elif result.whole:
                out.whole_image = True
            else:
                height, width = _shape(node.all_input_nodes[0])[-2:]
                out.final = LayerRF(
                    "output", "output", 1, 1, 0, 1, result.size, result.jump, result.start, width, height
                )
            break
        if shape is None or not inputs:
            continue  # constants, sizes, weights: no pixels flow through them
        if all(f.whole for f in inputs):
            fields[node.name] = inputs[0]  # after flattening or global pooling every unit already sees everything
            continue
        module = modules.get(node.target) if node.op == "call_module" else None
        geometry = None
        if isinstance(module, SPATIAL_MODULES):
            geometry = _module_geometry(module)
        elif node.op == "call_function":
            geometry = _function_geometry(node)
        if isinstance(geometry, str):
            out.reason = f"{node.target if module is not None else node.name} is a {geometry}"
            return out
        if geometry is not None:
            merged = _union(inputs)
            if isinstance(merged, str) or merged.whole or len(shape) != 4:
                fields[node.name] = merged if not isinstance(merged, str) else _Field(0, 1, 0.0, whole=True)
                continue
            k, s, p, d = geometry
            k_eff = d * (k - 1) + 1
            new = _Field(
                merged.size + (k_eff - 1) * merged.jump,
                merged.jump * s,
                merged.start + ((k_eff - 1) / 2 - p) * merged.jump,
            )
            fields[node.name] = new
            name = node.target if module is not None else node.name
            kind = type(module).__name__ if module is not None else node.target.__name__
            rf = LayerRF(name, kind, k, s, p, d, new.size, new.jump, new.start, shape[-1], shape[-2])
            out.layers.append(rf)
            out.calls[node.name], out.targets[node.name] = rf, str(node.target)
            continue
        keeps_field = (
            isinstance(module, POINTWISE_MODULES)
            or (node.op == "call_function" and node.target in POINTWISE_FUNCTIONS)
            or (node.op == "call_method" and node.target in POINTWISE_METHODS)
        )
        global_op = (
            isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear))
            or (node.op == "call_function" and node.target in WHOLE_IMAGE_FUNCTIONS)
            or (node.op == "call_method" and node.target in WHOLE_IMAGE_METHODS)
        )
        same_map = len(shape) == 4 and all(
            (_shape(a) or ())[-2:] == shape[-2:]
            for a in node.all_input_nodes
            if a.name in fields and len(_shape(a) or ()) == 4
        )
        if keeps_field and same_map:
            merged = _union(inputs)
            if isinstance(merged, str):
                out.reason = f"at {node.name}, {merged}"
                return out
            fields[node.name] = merged
        elif global_op and (len(shape) != 4 or shape[-2:] == (1, 1)):
            fields[node.name] = _Field(0, 1, 0.0, whole=True)
        elif node.op == "call_function" and node.target is operator.getitem:
            fields[node.name] = inputs[0]  # indexing a tuple of maps (or channels) keeps their fields
        else:
            what = type(module).__name__ if module is not None else getattr(node.target, "__name__", str(node.target))
            out.reason = (
                f"{node.target if module is not None else node.name} ({what}) is an operation cnnlab's receptive-field "
                f"tracer does not know"
            )
            return out
        if len(shape) == 4 and not fields[node.name].whole:  # a map a layer (or a residual sum, ...) gives
            f = fields[node.name]
            name = str(node.target) if module is not None else node.name
            kind = type(module).__name__ if module is not None else getattr(node.target, "__name__", str(node.target))
            out.calls[node.name] = LayerRF(name, kind, 1, 1, 0, 1, f.size, f.jump, f.start, shape[-1], shape[-2])
            out.targets[node.name] = name
    return out


def receptive_field(features: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRF]:
    """Analytic receptive field after each conv/pool layer of `features`, in forward order (traced, so branches
    count once each); an empty list when the field cannot be traced (`trace_fields(...).reason` says why)."""
    return trace_fields(features, input_shape).layers


def sees_whole_image(features: nn.Module) -> bool:
    """True when the features flatten the image (an MLP): every unit then sees every pixel."""
    return any(isinstance(m, nn.Flatten) for m in features.modules())


def final_receptive_field(features: nn.Module, input_shape: tuple[int, int, int]) -> int | None:
    """Receptive-field size at the output of `features` (the image's larger side if the features see all of it;
    1 if no layer moves pixels), or None when it cannot be traced."""
    if sees_whole_image(features):
        return max(input_shape[1:])
    analysis = trace_fields(features, input_shape)
    if analysis.whole_image:
        return max(input_shape[1:])
    return analysis.final.size if analysis.final is not None else None


def too_small_warning(
    features: nn.Module, input_shape: tuple[int, int, int], model_keys: Collection[str] | None = None
) -> str | None:
    """A warning when the last feature map's units see less than the whole image, or when the field is unknown.
    Its advice names only the keys of `model_keys` (the model config's) that grow the field; by default those of the
    model class whose layers `features` holds (ConvNet's, for plain torch layers)."""
    if sees_whole_image(features):
        return None
    analysis = trace_fields(features, input_shape)
    height, width = input_shape[1:]
    if analysis.reason is not None:
        return f"receptive field unknown: {analysis.reason}."
    if analysis.whole_image or analysis.final is None or analysis.final.size >= max(height, width):
        return None
    size = analysis.final.size
    return (
        f"receptive field {size}×{size} is smaller than the {height}×{width} input: no unit before "
        f"global pooling sees a whole object (the lesson's 'receptive field too small for the task'). "
        f"{_growing_advice(features, model_keys)}"
    )


# The model config keys that grow the receptive field, in the order the advice names them.
_GROWERS = {
    "depth": "depth",
    "blocks_per_stage": "blocks per stage",
    "widths": "conv groups",
    "pool": "pooling",
    "dilation": "dilation",
}


def _growing_advice(features: nn.Module, model_keys: Collection[str] | None) -> str:
    """too_small_warning's advice: the keys among `model_keys` that grow the field. By default the arguments of the
    Backbone class defined beside the layers `features` holds (a config's keys are its _target_'s arguments:
    cnnlab.config.check_targets); plain torch layers are ConvNet's (depth, pool, dilation)."""
    import inspect
    import sys

    from cnnlab.models import Backbone

    if model_keys is None:
        model_keys = ("depth", "pool", "dilation")
        homes = sorted({type(m).__module__ for m in features.modules()} - {None})
        for home in (h for h in homes if h.split(".")[0] != "torch"):
            found = [
                c
                for c in vars(sys.modules.get(home) or object).values()
                if inspect.isclass(c) and issubclass(c, Backbone) and c is not Backbone and c.__module__ == home
            ]
            if found:
                model_keys = list(inspect.signature(found[0]).parameters)
                break
    knobs = [f"{what} (model.{key})" for key, what in _GROWERS.items() if key in model_keys]
    if len(knobs) > 1:
        return f"Add {', '.join(knobs[:-1])} or {knobs[-1]}."
    if knobs:
        return f"Add {knobs[0]}."
    return (
        "Make the model deeper, or let it pool or dilate its convolutions: its config has no key for that "
        "(cnnlab-train --cfg job lists its keys); model=cnn has model.depth, model.pool and model.dilation."
    )


def input_gradient(
    features: nn.Module, input_shape: tuple[int, int, int], samples: int = 8, seed: int = 0
) -> torch.Tensor:
    """|∂ centre unit / ∂ input| summed over channels and `samples` random inputs: an H×W map."""
    gen = torch.Generator().manual_seed(seed)
    parameter = next(features.parameters(), None)
    device, dtype = (parameter.device, parameter.dtype) if parameter is not None else (torch.device("cpu"), None)
    x = torch.randn(samples, *input_shape, generator=gen).to(device, dtype or torch.float32).requires_grad_()
    was_training = features.training
    features.eval()
    out = features(x)
    features.train(was_training)
    if out.dim() != 4:
        raise ValueError(f"the features give {out.dim()}-D output, not B×C×h×w maps: no centre unit to follow")
    cy, cx = out.shape[-2] // 2, out.shape[-1] // 2
    out[:, :, cy, cx].sum().backward()
    return x.grad.abs().sum(dim=(0, 1)).float().cpu()


def empirical_receptive_field(grad_map: torch.Tensor, threshold: float = 0.0) -> tuple[int, int]:
    """Height and width of the bounding box where the input gradient is non-zero (above `threshold`·max)."""
    mask = grad_map > threshold * grad_map.max()
    rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
    if len(rows) == 0:
        return 0, 0
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
