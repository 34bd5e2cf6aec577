"""`cnnlab-equivariance [overrides] [--ckpt PATH] [--shifts 1 2 4]`: shift the input, compare features per layer.

The shift fills with zeros and the comparison keeps only feature-map positions whose receptive field stays inside
the image before and after it: a circular shift (torch.roll) wraps content across the border, where zero padding
sees something else, and that border artefact would hide what the layers themselves do."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from hydra.utils import instantiate
from rich.table import Table
from torch import nn

from cnnlab.config import compose_checked
from cnnlab.errors import CnnlabError
from cnnlab.figures import save_figure
from cnnlab.lab.tools import load_model, output_dir, parser, positive_int, require_backbone, writing_figures
from cnnlab.models.receptive_field import LayerRF, node_outputs, sees_whole_image, trace_fields, traced
from cnnlab.runs import console, console_script
from cnnlab.training.module import shift_agreement


@dataclass(frozen=True)
class ShiftError:
    """Relative error ‖f(shift_k x) − shift_{k/jump} f(x)‖ / ‖f(x)‖ after one layer, over the `positions`
    feature-map columns whose receptive field lies inside the image before and after the shift (nan if none)."""

    layer: str
    kind: str
    jump: int
    shift: int
    feature_shift: float
    relative_error: float
    positions: int


def shift_right(x: torch.Tensor, shift: int, circular: bool = False) -> torch.Tensor:
    """Move the last axis right by `shift` columns: zeros enter on the left and the rightmost columns leave
    (a camera panning over a larger scene), or, with `circular`, they wrap round to the left (torch.roll)."""
    if circular:
        return torch.roll(x, shifts=shift, dims=-1)
    out = torch.zeros_like(x)
    if shift < x.shape[-1]:
        out[..., shift:] = x[..., : x.shape[-1] - shift]
    return out


def interior_columns(rf: LayerRF, width: int, shift: int) -> torch.Tensor:
    """Output columns whose receptive field lies inside input columns [0, width − shift): they see the same
    pixels before and after the shift, and no padding or filled-in zeros."""
    centres = rf.start + rf.jump * torch.arange(rf.out_size)
    half = (rf.size - 1) / 2
    return ((centres - half >= 0) & (centres + half <= width - shift - 1)).nonzero().flatten()


@torch.no_grad()
def layer_shift_errors(features: nn.Module, images: torch.Tensor, shift: int) -> list[ShiftError]:
    """Shift `images` right by `shift` pixels (zero fill) and compare every layer's output with the original
    output shifted by shift/jump, on interior columns only: what is left is the layers' own lack of
    equivariance, not the border. Layers are the module calls of the traced graph (branches included), so any
    backbone works. A non-integer shift/jump is rounded: those layers cannot be equivariant to this shift, and
    the error says by how much they are not."""
    features.eval()
    width = images.shape[-1]
    analysis = trace_fields(features, tuple(images.shape[1:]))
    if analysis.reason is not None:
        raise CnnlabError(f"cnnlab-equivariance cannot follow this backbone's layers: {analysis.reason}.")
    graph = traced(features)
    names = set(analysis.calls)
    before = node_outputs(graph, images, names)
    after = node_outputs(graph, shift_right(images, shift), names)
    errors = []
    for node, rf in analysis.calls.items():
        x, x_shifted = before[node], after[node]
        feature_shift = shift / rf.jump
        columns = interior_columns(rf, width, shift)
        columns = columns[columns + round(feature_shift) < x.shape[-1]]
        original, moved = x[..., columns], x_shifted[..., columns + round(feature_shift)]
        error = (moved - original).norm() / original.norm().clamp_min(1e-12) if len(columns) else float("nan")
        errors.append(ShiftError(rf.name, rf.kind, rf.jump, shift, feature_shift, float(error), len(columns)))
    return errors


@torch.no_grad()
def prediction_change(net: nn.Module, images: torch.Tensor, shift: int, circular: bool = False) -> tuple[float, float]:
    """(fraction of predictions unchanged, mean total-variation distance of the class probabilities) when the
    images move right by `shift` pixels (zero fill, or wrapped round with `circular`)."""
    net.eval()
    p = net(images).softmax(-1)
    q = net(shift_right(images, shift, circular)).softmax(-1)
    return float((p.argmax(-1) == q.argmax(-1)).float().mean()), float(0.5 * (p - q).abs().sum(-1).mean())


def validation_images(cfg, count: int = 64):
    """The first `count` normalised validation images of the data (test images when data.val_size=0)."""
    datamodule = instantiate(cfg.data)  # never augmented here: no augment group to refuse the data
    datamodule.setup()
    images = datamodule.val_set.tensors[0]
    raw = (images if len(images) else datamodule.test_set.tensors[0])[:count]  # data.val_size=0: the test images
    return datamodule.prepare_batch(raw, train=False)


def _main() -> None:
    """Table and figure of per-layer shift errors, and how often the prediction changes."""
    p = parser("cnnlab-equivariance", __doc__)
    p.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--consistency-shift", type=int, default=4, help="Zhang's consistency: shifts up to K px (0: off)")
    p.add_argument("--draws", type=positive_int, default=3, help="independent draws of the shift pairs (the spread)")
    args = p.parse_args()
    out = output_dir("equivariance", args.out)
    if args.consistency_shift < 0:
        raise CnnlabError(
            f"--consistency-shift {args.consistency_shift}: a shift is a number of pixels, 1 or more. Fix: e.g. "
            f"--consistency-shift 4 (or 0 to skip it)."
        )
    net, run_cfg, label = load_model(compose_checked(args.overrides), args.ckpt, args.overrides)
    net = require_backbone(net, "cnnlab-equivariance")
    if sees_whole_image(net.features):
        raise CnnlabError(
            f"{type(net).__name__} flattens the image before its first layer, so it has no feature maps to shift. "
            f"Fix: a convolutional model, e.g. model=cnn (or model=fast)."
        )
    images = validation_images(run_cfg)  # the checkpoint's config, or the command line's
    width = images.shape[-1]
    side = min(images.shape[-2:])
    if args.consistency_shift >= side:  # checked here, before the per-layer work, as the shifts are
        raise CnnlabError(
            f"--consistency-shift {args.consistency_shift}: the shift must be 1..{side - 1} px on these images "
            f"(shortest side {side} px). Fix: e.g. --consistency-shift 4 (or 0 to skip it)."
        )
    bad = [k for k in args.shifts if not 0 < k < width]
    if bad:
        raise CnnlabError(
            f"--shifts {' '.join(map(str, bad))}: a shift must be 1..{width - 1} pixels on these "
            f"{width}-pixel-wide images. Fix: e.g. --shifts 1 2 4 8."
        )
    results = {k: layer_shift_errors(net.features, images, k) for k in args.shifts}
    table = Table(
        title=f"Relative error ‖f(shift x) − shift f(x)‖/‖f(x)‖ ({label} weights, padding "
        f"{run_cfg.model.get('padding_mode', 'zeros')}; zero-fill shifts, compared on the feature-map columns whose "
        f"receptive field stays inside the image: – where none does)",
        title_justify="left",
    )
    table.add_column("layer")
    table.add_column("op")
    table.add_column("jump", justify="right")
    for k in args.shifts:
        table.add_column(f"shift {k}", justify="right")
    first = results[args.shifts[0]]
    for i, row in enumerate(first):
        table.add_row(row.layer, row.kind, str(row.jump), *(_error(results[k][i]) for k in args.shifts))
    console().print(table)
    for k in args.shifts:
        same, distance = prediction_change(net, images, k)
        print(
            f"shift {k} (zero fill): prediction unchanged for {100 * same:.1f}% of {len(images)} images; "
            f"mean change in class probabilities (total variation) {distance:.3f}"
        )
    if args.consistency_shift:
        print(test_set_consistency(net, run_cfg, args))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(first)), 3.8))
    for k in args.shifts:
        ax.plot(range(len(first)), [r.relative_error for r in results[k]], marker="o", label=f"shift {k} px")
    ax.set_xticks(range(len(first)), [f"{r.layer}\n{r.kind}" for r in first], fontsize=6, rotation=90)
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_ylabel("relative error")
    ax.set_title("Translation equivariance per layer (0 = exactly equivariant)")
    ax.legend()
    with writing_figures(out) as path:
        saved = save_figure(fig, path("equivariance.png"))
    print("figure:", saved)


@torch.no_grad()
def test_set_consistency(net: nn.Module, cfg, args) -> str:
    """Zhang's consistency on the whole test split: mean ± std over `args.draws` independent draws of the shifts."""
    datamodule = instantiate(cfg.data)  # never augmented here: no augment group to refuse the data
    datamodule.setup()
    raw = datamodule.test_set.tensors[0]
    k, side = args.consistency_shift, min(datamodule.image_size)
    if not 0 < k < side or args.draws < 1:
        raise CnnlabError(
            f"--consistency-shift {k} --draws {args.draws}: the shift must be 1..{side - 1} px and the draws >= 1. "
            f"Fix: e.g. --consistency-shift 4 --draws 3 (or --consistency-shift 0 to skip it)."
        )
    net.eval()
    shares = []
    for draw in range(args.draws):
        generator = torch.Generator().manual_seed(draw)
        agree = [
            shift_agreement(net, datamodule.prepare_batch(chunk, train=False), k, generator)
            for chunk in raw.split(datamodule.eval_batch_size)
        ]
        shares.append(float(torch.cat(agree).mean()))
    mean = f"{100 * sum(shares) / len(shares):.2f}"
    spread = f" ± {100 * torch.tensor(shares).std().item():.2f}" if len(shares) > 1 else ""  # one draw: no spread
    return (
        f"consistency (Zhang 2019): the top-1 class agrees for two random shifts of up to {k} px (reflect padding) on "
        f"{mean}{spread}% of all {len(raw):,} test images ({args.draws} draw{'s' * (args.draws > 1)} of the shifts)"
    )


def _error(row: ShiftError) -> str:
    return f"{row.relative_error:.2e}" if row.positions else "–"


main = console_script(_main)
