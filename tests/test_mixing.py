"""Label-mixing augmentation (MixingOp: Mixup, CutMix): the ops mix images and soft targets exactly as the papers
define, the pipeline runs them last, the datamodule mixes training batches only, the loss reads soft targets, and
a tiny training with each learns.

Expected values are computed here from draws the test controls (a replaced `draw`, or torch's seeded RNG replayed),
not read back from the code under test.
"""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cnnlab.augment import Augmentation
from cnnlab.augment.ops import CutMix, MixingOp, Mixup, RandomCrop, RandomFlip, RandomRotate90
from cnnlab.cli.train import run
from cnnlab.data.tiny import TinyDataModule
from cnnlab.errors import ConfigError
from cnnlab.lab.tools import build_datamodule
from cnnlab.training.module import ImageClassifier
from cnnlab.training.trainer import run_config
from conftest import compose_config
from helpers import BatchKinds

K = 10  # classes


def images_and_targets(b: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """b random images (no two pixels equal across images, almost surely), labels 0..b-1 (distinct, so λ can be read
    off each target row), their one-hot targets; then the global RNG reseeded."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 16, 16, generator=gen)
    labels = torch.arange(b) % K
    torch.manual_seed(1)
    return x, labels, F.one_hot(labels, K).float()


def fixed_draw(op: MixingOp, lam: float, perm: torch.Tensor) -> None:
    op.draw = lambda images: (torch.tensor(lam), perm)  # type: ignore[method-assign]


def test_mixup_is_lambda_times_the_batch_plus_one_minus_lambda_times_its_shuffled_copy():
    x, labels, targets = images_and_targets(8)
    perm = torch.tensor([3, 0, 1, 2, 7, 4, 5, 6])
    op = Mixup(alpha=0.2)
    fixed_draw(op, 0.3, perm)
    out, mixed = op(x, targets)
    for i in range(8):
        assert torch.allclose(out[i], 0.3 * x[i] + 0.7 * x[perm[i]], atol=1e-6)
        expected = torch.zeros(K)
        expected[labels[i]] += 0.3
        expected[labels[perm[i]]] += 0.7
        assert torch.allclose(mixed[i], expected, atol=1e-6)


def test_mixup_draws_lambda_from_beta_alpha_alpha_and_a_permutation_from_torchs_seeded_rng():
    x, _, targets = images_and_targets(8)
    torch.manual_seed(7)
    out, mixed = Mixup(alpha=0.4)(x, targets)
    # Replay the draws: two Gamma(α) variates (λ = g0 / (g0 + g1): a Beta(α, α) draw), then the permutation.
    torch.manual_seed(7)
    g = torch._standard_gamma(torch.full((2,), 0.4))
    lam, perm = g[0] / g.sum(), torch.randperm(8)
    assert torch.allclose(out, lam * x + (1 - lam) * x[perm], atol=1e-6)
    assert torch.allclose(mixed, lam * targets + (1 - lam) * targets[perm], atol=1e-6)
    torch.manual_seed(8)
    assert not torch.allclose(Mixup(alpha=0.4)(x, targets)[0], out)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_lambda_has_the_beta_alpha_alpha_mean_and_variance(alpha):
    torch.manual_seed(0)
    op, x = Mixup(alpha=alpha), torch.zeros(2, 1, 1, 1)
    lams = torch.stack([op.draw(x)[0] for _ in range(4000)])
    assert lams.min() >= 0 and lams.max() <= 1
    variance = 1 / (4 * (2 * alpha + 1))  # Beta(α, α): mean 1/2, variance 1 / (4(2α + 1))
    assert abs(lams.mean() - 0.5) < 0.03  # sd of the mean ≤ √(1/4 / 4000) ≈ 0.008
    assert abs(lams.var() - variance) < 0.15 * variance


def test_p_is_the_probability_that_a_batch_is_mixed_at_all():
    x, _, targets = images_and_targets(8)
    never = Mixup(alpha=1.0, p=0.0)
    out, mixed = never(x, targets)
    assert torch.equal(out, x) and torch.equal(mixed, targets)
    torch.manual_seed(0)
    half = CutMix(alpha=1.0, p=0.5)
    unmixed = sum(bool(half.draw(x)[0] == 1) for _ in range(400))
    assert 160 <= unmixed <= 240  # Binomial(400, 0.5): mean 200, sd 10
    for bad in (dict(alpha=0), dict(alpha=-1.0), dict(p=1.5)):
        with pytest.raises(ConfigError, match=r"^(mixup|cutmix) (alpha|p)=.* Fix: e\.g\. "):
            (Mixup if "alpha" in bad else CutMix)(**bad)


@pytest.mark.parametrize("op", [Mixup(alpha=0.2), Mixup(alpha=1.0), CutMix(alpha=1.0), CutMix(alpha=0.3, p=0.5)])
def test_mixed_targets_are_probability_vectors_whose_support_is_the_two_mixed_labels(op):
    torch.manual_seed(3)
    labels = torch.randint(0, K, (64,))
    targets = F.one_hot(labels, K).float()
    for _ in range(20):
        _, mixed = op(torch.rand(64, 3, 16, 16), targets)
        assert torch.allclose(mixed.sum(-1), torch.ones(64), atol=1e-6)
        assert mixed.min() >= 0
        assert ((mixed > 0).sum(-1) <= 2).all() and (mixed[torch.arange(64), labels] > 0).any()


def cutmix_with_known_partner(op: CutMix, perm: torch.Tensor) -> list[float]:
    """Keep the op's own λ draw, but pair image i with perm[i]; return the drawn λs."""
    drawn, draw = [], op.draw

    def draw_with_perm(images):
        lam, _ = draw(images)
        drawn.append(float(lam))
        return lam, perm

    op.draw = draw_with_perm  # type: ignore[method-assign]
    return drawn


def test_cutmix_pastes_one_box_from_the_partner_whose_area_is_one_minus_the_returned_lambda():
    x, labels, targets = images_and_targets(8)
    perm = torch.roll(torch.arange(8), 1)  # every image gets another one's box
    op = CutMix(alpha=1.0)
    drawn = cutmix_with_known_partner(op, perm)
    h = w = 16
    clipped = 0
    for trial in range(60):
        torch.manual_seed(trial)
        out, mixed = op(x, targets)
        pasted = (out != x).any(1)  # B×H×W: where the image changed
        assert (pasted == pasted[0]).all()  # one box for the whole batch
        box = pasted[0]
        for i in range(8):
            assert torch.equal(out[i][:, box], x[perm[i]][:, box]) and torch.equal(out[i][:, ~box], x[i][:, ~box])
        lam = mixed[0, labels[0]]  # labels are distinct: the share of each image's own label is the returned λ
        assert torch.allclose(mixed[:, labels[perm]].diagonal(), 1 - lam.expand(8), atol=1e-6)
        assert int(box.sum()) == pytest.approx(float(1 - lam) * h * w, abs=1e-3)
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        assert int(box.sum()) == len(rows) * len(cols)  # a rectangle
        side = int(h * (1 - drawn[-1]) ** 0.5)  # the drawn λ sets the box: ⌊H·√(1−λ)⌋ before clipping
        for idx in (rows, cols):
            assert len(idx) <= side
            touches = len(idx) and (idx[0] == 0 or idx[-1] == h - 1)
            assert len(idx) == side or touches
            clipped += len(idx) < side
    assert clipped > 0  # the border clips some boxes: λ is then recomputed from the area actually pasted


def test_image_ops_run_first_then_one_mixing_op_which_must_come_last():
    x, labels, targets = images_and_targets(8)
    pipeline = Augmentation([RandomCrop(padding=2), RandomFlip(), Mixup(alpha=1.0)])
    assert pipeline.names == ["crop", "flip", "mixup"] and pipeline.mixes_labels and pipeline.batched
    assert not Augmentation([RandomCrop()]).mixes_labels and not Augmentation([]).mixes_labels
    torch.manual_seed(5)
    out, mixed = pipeline(x, targets)
    torch.manual_seed(5)
    expected_images, expected_targets = Mixup(alpha=1.0)(RandomFlip()(RandomCrop(padding=2)(x)), targets)
    assert torch.equal(out, expected_images) and torch.equal(mixed, expected_targets)
    torch.manual_seed(5)
    assert torch.equal(pipeline(x), out)  # without targets (a preview): the same images
    _, untouched = Augmentation([RandomFlip()])(x, targets)  # no mixing op: targets pass unchanged
    assert untouched is targets
    with pytest.raises(ConfigError) as error:
        Augmentation([Mixup(), RandomCrop()])
    assert str(error.value) == (
        "augmentation ops 0 (mixup) mix labels: a pipeline takes at most one label-mixing op, after every image op "
        "(each image is augmented, then pairs mixed). Fix: keep one MixingOp (Mixup, CutMix) and list it last in "
        "augment.ops."
    )
    with pytest.raises(ConfigError, match=r"^augmentation ops 1 \(mixup\), 2 \(cutmix\) mix labels: "):
        Augmentation([RandomCrop(), Mixup(), CutMix()])
    assert repr(Augmentation([CutMix(alpha=1.0, p=0.5)])) == "Augmentation(cutmix(alpha=1.0, p=0.5))"


@pytest.mark.parametrize("op", [Mixup(), CutMix(p=0.5)], ids=["mixup", "cutmix"])
def test_mixing_ops_draw_and_compute_on_the_batchs_own_device(op):
    x, targets = torch.empty(4, 3, 32, 32, device="meta"), torch.empty(4, K, device="meta")
    out, mixed = op(x, targets)
    assert (out.device.type, out.shape, mixed.device.type, mixed.shape) == ("meta", x.shape, "meta", targets.shape)


def training_hook(dm: TinyDataModule, images: torch.Tensor, labels: torch.Tensor, training: bool):
    dm.trainer = SimpleNamespace(training=training, current_epoch=0)
    return dm.on_after_batch_transfer((images, labels), 0)


def test_the_datamodule_mixes_training_batches_only_and_keeps_the_hard_labels():
    dm = TinyDataModule(augment=Augmentation([Mixup(alpha=1.0)]))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (32,), generator=gen)
    clean = dm.normalize(images.float() / 255)
    torch.manual_seed(2)
    out, out_labels, soft = training_hook(dm, images, labels, training=True)
    torch.manual_seed(2)
    expected_images, expected_soft = Mixup(alpha=1.0)(images.float() / 255, F.one_hot(labels, 10).float())
    assert torch.equal(out_labels, labels) and soft.shape == (32, dm.num_classes) and soft.dtype == torch.float32
    assert torch.allclose(out, dm.normalize(expected_images), atol=1e-5) and torch.allclose(soft, expected_soft)
    assert not torch.allclose(out, clean)
    for _ in range(3):  # validation and test: (images, labels), never mixed
        evaluated = training_hook(dm, images, labels, training=False)
        assert len(evaluated) == 2 and torch.equal(evaluated[0], clean) and torch.equal(evaluated[1], labels)
    plain = TinyDataModule(augment=Augmentation([RandomFlip(p=0.0)]))  # no mixing op: two-tuples in training too
    assert len(training_hook(plain, images, labels, training=True)) == 2
    assert torch.equal(dm.soft_targets(labels), F.one_hot(labels, 10).float())


def test_label_safety_checks_still_refuse_unsafe_image_ops_and_may_name_a_mixing_op():
    with pytest.raises(ConfigError, match=r"^augmentation op 'rotate90' changes what a label means on tiny"):
        TinyDataModule(augment=Augmentation([RandomRotate90(), Mixup()]), label_unsafe={"rotate90": "turns."})
    TinyDataModule(augment=Augmentation([RandomFlip(), Mixup()]), label_unsafe={"rotate90": "turns."})  # accepted
    with pytest.raises(ConfigError, match=r"^augmentation op 'cutmix' changes what a label means on tiny: boxes\."):
        TinyDataModule(augment=Augmentation([CutMix()]), label_unsafe={"cutmix": "boxes."})
    allowed = Augmentation([CutMix()], allow_label_unsafe=True)
    assert TinyDataModule(augment=allowed, label_unsafe={"cutmix": "boxes."}).augment is allowed


@pytest.fixture(scope="module")
def module():
    return ImageClassifier(run_config(compose_config(["data=tiny", "model.width=8"])))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_with_one_hot_soft_targets_is_the_hard_label_loss(module, smoothing):
    module.smoothing = smoothing
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    module.eval()  # batchnorm in eval mode: two forward passes give the same logits
    for metric in (*module.acc.values(), *module.mean_loss.values()):
        metric.reset()
    hard, logits = module._step((images, labels), "train")
    hard_acc, hard_loss = module.acc["train_acc"].compute(), module.mean_loss["train_loss"].compute()
    module.acc["train_acc"].reset(), module.mean_loss["train_loss"].reset()
    soft, _ = module._step((images, labels, F.one_hot(labels, 10).float()), "train")
    assert torch.allclose(soft, hard, atol=1e-6)
    assert torch.allclose(hard, F.cross_entropy(logits, labels, label_smoothing=smoothing), atol=1e-6)
    assert module.acc["train_acc"].compute() == hard_acc
    assert torch.allclose(module.mean_loss["train_loss"].compute(), hard_loss, atol=1e-6)


def test_under_mixing_train_acc_counts_the_dominant_label_and_train_loss_is_unsmoothed_ce(module):
    module.smoothing = 0.1
    module.eval()
    gen = torch.Generator().manual_seed(1)
    images, labels = torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    with torch.no_grad():
        predicted = module(images).argmax(-1)
    # Each target: 0.7 on the predicted class, 0.3 on the image's own label (the un-mixed label) where they differ.
    soft = 0.7 * F.one_hot(predicted, 10).float() + 0.3 * F.one_hot(labels, 10).float()
    module.acc["train_acc"].reset(), module.mean_loss["train_loss"].reset()
    loss, logits = module._step((images, labels, soft), "train")
    assert module.acc["train_acc"].compute() == 1.0  # the prediction is every image's dominant label
    expected_loss = -(soft * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(module.mean_loss["train_loss"].compute(), expected_loss, atol=1e-5)
    smoothed = 0.9 * soft + 0.1 / 10
    assert torch.allclose(loss, -(smoothed * logits.log_softmax(-1)).sum(-1).mean(), atol=1e-5)


@pytest.mark.parametrize("augment", ["mixup", "cutmix"])
def test_tiny_training_with_a_mixing_op_completes_learns_and_never_mixes_validation_or_test(augment, tmp_path):
    overrides = ["data=tiny", "progress_bar=false", "model.width=16", "trainer.max_epochs=2", f"augment={augment}"]
    overrides += ["+callbacks.kinds._target_=helpers.BatchKinds"]  # TensorBoard too: LabImages previews mixed images
    run(compose_config(overrides, tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2 and metrics["mixes_labels"] is True
    assert metrics["test_acc"] > 0.5 and metrics["val_acc_best"] > 0.5  # chance is 0.1 (measured: ~0.9)
    kinds = BatchKinds.last
    assert kinds.lengths == {"train": {3}, "val": {2}, "test": {2}}  # soft targets in training batches only
    assert torch.allclose(torch.cat(kinds.row_sums), torch.tensor(1.0), atol=1e-5)


def test_the_report_says_what_the_train_val_gap_means_when_a_job_mixed_labels(tmp_path):
    from cnnlab.report.compare import compare

    curves = {"train/acc": [0.6], "val/acc": [0.8], "train/loss": [1.0], "val/loss": [0.5]}
    for num, (augment, mixes) in enumerate([("none", False), ("mixup", True), ("mine", True)]):
        job = tmp_path / "sweep" / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- augment={augment}\n")
        record = {"status": "completed", "val_acc_final": 0.8, "test_acc": 0.8, "curves": curves}
        (job / "metrics.json").write_text(json.dumps({**record, "mixes_labels": mixes}))
    compare([tmp_path / "sweep"], tmp_path / "report")
    summary = (tmp_path / "report" / "summary.md").read_text()
    note = [line for line in summary.splitlines() if line.startswith("Label-mixing augmentation")]
    assert note == [
        "Label-mixing augmentation in augment=mine, augment=mixup: train acc there is measured on mixed images "
        "(against each image's dominant label), not comparable with val acc on clean images, so its train_val_gap "
        "is not an overfitting measure."
    ]
    (tmp_path / "sweep" / "1").rename(tmp_path / "elsewhere")
    older = {"status": "completed", "val_acc_final": 0.8, "curves": curves}  # a record from before mixing ops
    (tmp_path / "sweep" / "2" / "metrics.json").write_text(json.dumps(older))
    compare([tmp_path / "sweep"], tmp_path / "report2")
    assert "Label-mixing" not in (tmp_path / "report2" / "summary.md").read_text()


def test_a_hook_subclass_is_one_class_the_pipeline_and_datamodule_accept():
    class SwapHalves(MixingOp):
        """A toy mixing op: the second half of the batch takes the first half's images and targets."""

        name = "swap"

        def __call__(self, images, targets):
            half = len(images) // 2
            return torch.cat([images[:half], images[:half]]), torch.cat([targets[:half], targets[:half]])

    dm = TinyDataModule(augment=Augmentation([RandomFlip(p=0.0), SwapHalves()]))
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([1, 2, 3, 4])
    out, out_labels, soft = training_hook(dm, images, labels, training=True)
    assert torch.equal(out[2:], out[:2]) and torch.equal(out_labels, labels)
    assert torch.equal(soft.argmax(-1), torch.tensor([1, 2, 1, 2]))


def test_build_datamodule_gives_the_configs_mixing_pipelines(tmp_path):
    for augment, op in (("mixup", Mixup), ("cutmix", CutMix)):
        dm = build_datamodule(compose_config(["data=tiny", f"augment={augment}"], tmp_path))
        assert dm.augment.mixes_labels and type(dm.augment.ops[-1]) is op
        assert (dm.augment.ops[-1].alpha, dm.augment.ops[-1].p) == {"mixup": (0.2, 1.0), "cutmix": (1.0, 0.5)}[augment]
