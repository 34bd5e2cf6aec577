"""The speedrun's peers (scripts/peer_airbench94*.py, scripts/peer_hiverge.py) run end to end, and their shared
precision rule and hiverge's pieces do what their docstrings say; their speed and accuracy are measured by hand
(docs/benchmarks.md), never here."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO, write_fake_cifar

sys.path.insert(0, str(REPO / "scripts"))  # the peers are scripts that import each other by name
import peer_airbench94  # noqa: E402
import peer_hiverge  # noqa: E402

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: fpu sse2 avx avx2 fma {extra}
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse2 avx avx2 fma {extra}
"""


@pytest.mark.slow  # a subprocess training two FastNet steps at batch 2,000 (~15 s idle; hiverge's 3 steps of 1,536)
@pytest.mark.parametrize("script", ["peer_airbench94.py", "peer_airbench94_muon.py", "peer_hiverge.py"])
def test_a_peer_trains_an_epoch_and_prints_its_accuracy(tmp_path, script):
    write_fake_cifar(tmp_path, per_batch=1000)  # 5,000 training images: two batches of 2,000 (one of airbench94's)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), "--data-dir", str(tmp_path), "--epochs", "1", "--curve"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("device and precision: cpu, ")
    assert "epoch 1: train loss" in proc.stdout and "seed 0: test acc" in proc.stdout
    assert "curve: epoch 1, " in proc.stdout and "s of it in --curve evaluations" in proc.stdout
    assert "nan" not in proc.stdout.lower()


@pytest.mark.slow  # two epochs of the muon peer, the first at 16 px, then five selective-TTA evaluations
def test_the_muon_peer_ablations_resize_epochs_and_select_tta_views(tmp_path):
    write_fake_cifar(tmp_path, per_batch=1000)
    script = [sys.executable, str(REPO / "scripts" / "peer_airbench94_muon.py"), "--data-dir", str(tmp_path)]
    proc = subprocess.run(
        [*script, "--epochs", "2", "--sizes", "16,32", "--tta-select"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 2: train loss" in proc.stdout
    shares = [
        float(line.split("views for ")[1].split("%")[0]) for line in proc.stdout.splitlines() if "below p=" in line
    ]
    assert len(shares) == 5 and shares == sorted(shares)  # a higher threshold gives more images the extra views
    refused = subprocess.run([*script, "--epochs", "2", "--sizes", "16"], capture_output=True, text=True)
    assert refused.returncode == 2 and "names 1 sizes for 2 epochs" in refused.stderr


def test_the_peers_compute_in_bf16_on_a_cpu_only_where_it_has_native_bf16(tmp_path):
    zen1 = CPUINFO.format(vendor="AuthenticAMD", extra="sha_ni")  # an AMD EPYC Zen 1: avx2, bf16 emulated
    assert "avx2" in peer_airbench94.cpu_flags(zen1) and "bugs" not in peer_airbench94.cpu_flags(zen1)
    assert peer_airbench94.choose_precision("cpu", peer_airbench94.cpu_flags(zen1)) == (
        None,
        "cpu, fp32 (no avx512_bf16/amx_bf16 on this CPU)",
    )
    for extra in ("avx512f avx512_bf16", "amx_tile amx_bf16", "avx512_bf16 amx_bf16"):
        dtype, why = peer_airbench94.choose_precision(
            "cpu", peer_airbench94.cpu_flags(CPUINFO.format(vendor="x", extra=extra))
        )
        assert dtype is torch.bfloat16 and why.startswith("cpu, bf16 autocast") and "bf16 on this CPU" in why
    assert peer_airbench94.choose_precision("cpu", {"avx512f", "avx512_vnni"})[0] is None  # avx512 alone is not bf16
    assert peer_airbench94.choose_precision("cuda", set())[0] is torch.bfloat16
    (tmp_path / "cpuinfo").write_text(CPUINFO.format(vendor="x", extra="amx_bf16"))  # read from a path, or none
    assert "amx_bf16" in peer_airbench94.cpu_flags(tmp_path / "cpuinfo")
    assert peer_airbench94.cpu_flags(tmp_path / "absent") == set()


def test_the_chosen_precision_is_what_the_peers_compute_in(monkeypatch, capsys):
    monkeypatch.setitem(peer_airbench94.RUN, "device", peer_airbench94.RUN["device"])
    monkeypatch.setitem(peer_airbench94.RUN, "dtype", peer_airbench94.RUN["dtype"])
    monkeypatch.setattr(peer_airbench94, "cpu_flags", lambda: {"avx2"})
    assert peer_airbench94.setup_device("cpu") == torch.device("cpu")
    assert capsys.readouterr().out == "device and precision: cpu, fp32 (no avx512_bf16/amx_bf16 on this CPU)\n"
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with peer_airbench94.autocast():
        assert net(torch.randn(2, 3, 2, 2)).dtype is torch.float32
    assert peer_airbench94.compute_dtype() is torch.float32
    monkeypatch.setattr(peer_airbench94, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    peer_airbench94.setup_device("cpu")
    with peer_airbench94.autocast():
        assert net(torch.randn(2, 3, 2, 2)).dtype is torch.bfloat16
    assert peer_airbench94.compute_dtype() is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        peer_airbench94.setup_device("cuda")


def test_hiverges_batched_newton_schulz_is_each_filter_bank_orthogonalised_alone():
    gen = torch.Generator().manual_seed(0)
    shapes = [(64, 24, 3, 3), (64, 64, 3, 3), (256, 64, 3, 3), (256, 256, 3, 3), (200, 8, 3, 3)]  # the last one tall
    updates = [torch.randn(shape, generator=gen) for shape in shapes]
    assert peer_hiverge.HYP["ns_coefficients"] == (3.4576, -4.7391, 2.0843)  # the published script's
    assert peer_hiverge.HYP["target_magnitude"] == (0.5012, 0.0786) and peer_hiverge.HYP["ns_steps"] == 3
    a, b, c = peer_hiverge.HYP["ns_coefficients"]
    for progress in (0.0, 0.4, 1.0):
        batched = peer_hiverge.batched_newton_schulz(updates, progress, torch.float32)
        first, last = peer_hiverge.HYP["target_magnitude"]
        target = first * (1 - progress) + last * progress
        for update, got in zip(updates, batched):  # one bank at a time, unpadded, in float64: the independent route
            x = update.reshape(len(update), -1).double()
            x = x * (target / (x.norm() + 1e-5))
            x = x / (x.norm() + 1e-5)
            tall = len(x) > x.shape[1]
            x = x.T if tall else x
            for _ in range(3):
                s = x @ x.T
                x = a * x + (b * s + c * s @ s) @ x
            want = (x.T if tall else x).reshape(update.shape)
            assert got.shape == update.shape and got.dtype == update.dtype
            torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-4)
    singular = torch.linalg.svdvals(batched[3].reshape(256, -1))  # roughly orthogonal: singular values near 1
    assert 0.5 < singular.min() and singular.max() < 1.5


def test_hiverges_muon_rescales_the_filters_only_every_2_plus_15_progress_steps():
    conv = nn.Conv2d(4, 8, 3, bias=False)
    muon = peer_hiverge.Muon([conv.weight], lr=0.0, momentum=0.655, weight_decay=0.0016, total_steps=30)
    rescaled = []
    for step in range(1, 31):
        with torch.no_grad():
            conv.weight.mul_(5 * 8**0.5 / conv.weight.norm())  # norm 5 √8; a rescaling brings it back to √8
        conv.weight.grad = torch.randn_like(conv.weight)
        muon.step()
        if abs(conv.weight.norm().item() - 8**0.5) < 1e-4:
            rescaled.append(step)
    assert rescaled == [3, 9, 21]  # 3 - 0 ≥ 2 + int(1.5); 9 - 3 ≥ 2 + int(4.5); 21 - 9 ≥ 2 + int(10.5)


def test_hiverges_color_jitter_shifts_and_scales_each_image_within_its_ranges():
    images = torch.zeros(2000, 3, 4, 4)
    images[:, :, 0] = 1.0  # rows of ones and of zeros: (1 + b) c and b c give each image's b and c back
    out = peer_hiverge.color_jitter(images.clone(), 0.1399, 0.1308, torch.Generator().manual_seed(0))
    scale = out[:, 0, 0, 0] - out[:, 0, 1, 0]
    shift = out[:, 0, 1, 0] / scale
    assert (scale - 1).abs().max() <= 0.1308 + 1e-6 and (scale - 1).abs().max() > 0.12
    assert shift.abs().max() <= 0.1399 + 1e-6 and shift.abs().max() > 0.13
    assert (out[:, :, 1:] == out[:, :1, 1:2, :1]).all()  # one shift and scale for all of an image's pixels
    assert shift.std() > 0.05 and scale.std() > 0.05  # drawn per image


def test_hiverges_whitening_filters_whiten_the_patches():
    images = (torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)) - 0.5) * 4
    images[:, 1] += 0.5 * images[:, 0]  # correlated channels
    layer = nn.Conv2d(3, 24, 2, bias=False)
    peer_hiverge.init_whitening_svd(layer, images, eps=5e-4)
    patches = F.conv2d(images, layer.weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    torch.testing.assert_close(patches.T @ patches / len(patches), torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(layer.weight[12:], -layer.weight[:12])
    assert not layer.weight.requires_grad


def test_hiverges_selective_tta_gives_six_views_to_the_least_confident_quarter_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    x = torch.randn(40, 3, 32, 32)
    plain = peer_hiverge.plain_logits(net, x)
    logits = peer_hiverge.selective_tta(net, x, plain, quantile=0.25)
    changed = (logits != plain).any(1).nonzero().squeeze(1)
    least = plain.softmax(1).amax(1).argsort()[:10]
    assert sorted(changed.tolist()) == sorted(least.tolist())
    padded = F.pad(x, (1,) * 4, "reflect")  # the six views, written out
    views = [x, padded[:, :, :32, :32], padded[:, :, 2:, 2:]]
    views += [v.flip(-1) for v in views]
    want = torch.stack([net(v) / 3072 for v in views]).mean(0)
    torch.testing.assert_close(logits[least], want[least])
    torch.testing.assert_close(peer_hiverge.six_views(net, x, batch=16), want)
