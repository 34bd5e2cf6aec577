"""Run cnnlab-train / cnnlab-eval on every bad input we guard against; write docs/robustness.md.

.venv/bin/python scripts/robustness_report.py            # ~15 minutes on 2 CPU cores (AMD EPYC Zen 3)
.venv/bin/python scripts/robustness_report.py --select "4th: image"   # only those cases, printed; the doc is kept
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import write_fake_cifar as write_random_folder  # noqa: E402  (the tests' CIFAR-10 writer)

BIN = Path(sys.executable).parent
OUT = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"
TINY = ["data=tiny", "progress_bar=false", "trainer.max_epochs=1", "model.width=8"]


def damaged(root: Path, how: str) -> Path:
    """A fake CIFAR-10 folder with data_batch_2 damaged in one way."""
    write_random_folder(root, per_batch=20)
    path = root / "cifar-10-batches-py" / "data_batch_2"
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif how == "not a pickle":
        path.write_text("<html>404 Not Found</html>")
    elif how == "wrong shape":
        import pickle

        import numpy as np

        path.write_bytes(pickle.dumps({b"data": np.zeros((20, 1024), np.uint8), b"labels": [0] * 20}))
    elif how == "label out of range":
        import pickle

        import numpy as np

        path.write_bytes(pickle.dumps({b"data": np.zeros((20, 3072), np.uint8), b"labels": [11] * 20}))
    return root


def cases(tmp: Path) -> list[tuple[str, str, list[str]]]:
    """(what, command, args) for each bad input."""
    return [
        ("unknown pooling", "train", TINY + ["model.pool=maxx"]),
        ("unknown activation", "train", TINY + ["model.activation=tanh"]),
        ("unknown augmentation", "train", TINY + ["augment=no_such_augment_xyz"]),
        ("unknown optimizer", "train", TINY + ["optim=no_such_optim_xyz"]),
        ("unknown schedule", "train", TINY + ["schedule=no_such_schedule_xyz"]),
        ("misspelt key", "train", TINY + ["model.dpth=3"]),
        ("new key", "train", TINY + ["+model.foo=1"]),
        ("wrong type: seed", "train", TINY + ["seed=abc"]),
        ("wrong type: val_size", "train", TINY + ["data.val_size=abc"]),
        ("wrong type: train_subset", "train", TINY + ["data.train_subset=abc"]),
        ("wrong type: dropout", "train", TINY + ["model.dropout=abc"]),
        ("momentum -1", "train", TINY + ["optim.momentum=-1"]),
        ("one-cycle warm-up fraction 2", "train", TINY + ["schedule.pct_start=2"]),
        ("growth -1", "train", TINY + ["model.growth=-1"]),
        ("unknown padding mode", "train", TINY + ["model.padding_mode=foo"]),
        ("threads -1", "train", TINY + ["threads=-1"]),
        ("a GPU asked for where there is none", "train", TINY + ["trainer.accelerator=gpu"]),
        ("output directory is a file", "train", TINY + [f"hydra.run.dir={tmp}/a_file"]),
        ("depth 0", "train", TINY + ["model.depth=0"]),
        ("width -4", "train", TINY + ["model.width=-4"]),
        ("too deep for 32×32", "train", TINY + ["model.depth=6"]),
        ("batch size 0", "train", TINY + ["data.batch_size=0"]),
        ("epochs 0", "train", TINY + ["trainer.max_epochs=0"]),
        ("learning rate -0.1", "train", TINY + ["optim.lr=-0.1"]),
        ("dropout 1.0", "train", TINY + ["model.dropout=1.0"]),
        ("train_subset larger than the training set", "train", TINY + ["data.train_subset=5000"]),
        ("label-unsafe augmentation", "train", TINY + ["augment=rotate90"]),
        (
            "data_dir missing, download impossible",
            "train",
            ["progress_bar=false", f"data.data_dir={tmp}/nowhere", "data.download=false"],
        ),
        *[
            (
                f"batch file {how}",
                "train",
                [
                    "progress_bar=false",
                    f"data.data_dir={damaged(tmp / how.replace(' ', '_'), how)}",
                    "data.val_size=10",
                ],
            )
            for how in ("truncated", "not a pickle", "wrong shape", "label out of range")
        ],
        ("validation split larger than the data", "train", TINY + ["data.val_size=100000"]),
        ("an epoch of no batches (limit 0)", "train", TINY + ["debug=limit", "trainer.limit_train_batches=0"]),
        ("an epoch of no batches (cpu94 batch on tiny data)", "train", ["experiment=cpu94", "data=tiny"]),
        ("overfit from a DataLoader", "train", TINY + ["debug=overfit", "data.on_device=false"]),
        ("more threads than cores", "train", TINY + ["threads=99"]),
        ("precision that casts the model", "train", TINY + ["trainer.precision=64-true"]),
        ("channels_last maybe", "train", TINY + ["channels_last=maybe"]),
        ("eval: checkpoint does not exist", "eval", [f"ckpt_path={tmp}/missing.ckpt"]),
        ("resume: run dir without checkpoint", "train", TINY + [f"resume={tmp}/never-ran"]),
        (
            "eval: checkpoint of a different model",
            "eval",
            [f"ckpt_path={tmp}/good/checkpoints/best.ckpt", "model.depth=4"],
        ),
        ("resume: checkpoint of a different model", "train", TINY + [f"resume={tmp}/good", "model.width=16"]),
        ("eval: file is not a checkpoint", "eval", [f"ckpt_path={tmp}/good/metrics.json"]),
        ("loss diverges to NaN (learning rate 1e4)", "train", TINY + ["optim.lr=1e4", "model.batchnorm=false"]),
        ("same run directory twice", "train", TINY + [f"hydra.run.dir={tmp}/good"]),
        ("resume a completed run", "train", TINY + [f"resume={tmp}/good"]),
        (
            "eval into a training run's directory",
            "eval",
            [f"ckpt_path={tmp}/good/checkpoints/best.ckpt", f"hydra.run.dir={tmp}/good"],
        ),
        (
            "eval of a missing checkpoint into a training run",
            "eval",
            [f"ckpt_path={tmp}/missing.ckpt", f"hydra.run.dir={tmp}/good"],
        ),
        # the third pass (issue 24's fresh cases): values Lightning or numpy refused only after the run dir opened
        ("seed beyond numpy's range", "train", TINY + ["seed=4294967296"]),
        ("gradient accumulation 0", "train", TINY + ["+trainer.accumulate_grad_batches=0"]),
        ("validation every 0 epochs", "train", TINY + ["+trainer.check_val_every_n_epoch=0"]),
        ("negative gradient clip", "train", TINY + ["+trainer.gradient_clip_val=-1"]),
        ("devices 0", "train", TINY + ["trainer.devices=0"]),
        ("a limit fraction above 1", "train", TINY + ["+trainer.limit_val_batches=1.5"]),
        ("unknown strategy", "train", TINY + ["+trainer.strategy=bogus"]),
        (
            "eval: precision that casts the model",
            "eval",
            [f"ckpt_path={tmp}/good/checkpoints/best.ckpt", "trainer.precision=64-true"],
        ),
        ("eval: devices 0", "eval", [f"ckpt_path={tmp}/good/checkpoints/best.ckpt", "trainer.devices=0"]),
        ("eval: more threads than cores", "eval", [f"ckpt_path={tmp}/good/checkpoints/best.ckpt", "threads=99"]),
        # the fourth pass: output folders inside a finished run
        ("sweep into a finished run", "train", ["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp}/good"]),
        ("sweep inside a finished run", "train", ["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp}/good/sweep"]),
        ("run dir inside a finished run", "train", TINY + [f"hydra.run.dir={tmp}/good/checkpoints/new"]),
        ("sweep into a used sweep dir", "train", ["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp}/sweep"]),
        ("run dir is a dangling link", "train", TINY + [f"hydra.run.dir={tmp}/dangling"]),
        ("a new run in the current folder (it holds runs)", "train", TINY + [f"hydra.run.dir={tmp}"]),
        ("resume in a multirun", "train", ["-m", *TINY, f"resume={tmp}/good"]),
        ("start from a checkpoint with no epoch left", "train", TINY + [f"ckpt_path={tmp}/good/checkpoints/last.ckpt"]),
        ("eval: a run folder as the checkpoint", "eval", [f"ckpt_path={tmp}/good"]),
        ("eval: weights that do not fit the config", "eval", [f"ckpt_path={tmp}/damaged.ckpt"]),
        *issue_30(tmp),
        *fourth_pass(tmp),
    ]


def issue_30(tmp: Path) -> list[tuple]:
    """The eleven commands issue #30 found broken, each as the issue ran it (`#30.N` is the issue's item)."""
    import numpy as np
    import torch
    from PIL import Image

    one_class = tmp / "one_class"
    (one_class / "cat").mkdir(parents=True)
    damaged_pics = picture_folder(tmp / "damaged_pics", "plain")
    png = damaged_pics / "dog" / "3.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # an interrupted copy
    strays = picture_folder(tmp / "stray_pics", "plain")
    (strays / "cat" / "notes.txt").write_text("shot on a phone")
    (strays / "dog" / "gone.png").symlink_to(tmp / "nowhere.png")
    for i in range(12):
        Image.fromarray(np.full((20, 20, 3), i * 20, np.uint8)).save(one_class / "cat" / f"{i}.png")
    conf = tmp / "myconf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "broken.yaml").write_text("_target_: cnnlab.models.cnn.ConvNet\ndepth: 2\n  width: [8\n")
    (conf / "model" / "mine.yaml").write_text((Path(__file__).resolve().parents[1] / "conf/model/cnn.yaml").read_text())
    checkpoint = torch.load(tmp / "good/checkpoints/best.ckpt", weights_only=False)
    state = checkpoint["state_dict"]
    checkpoint["state_dict"] = {
        k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()
    }
    torch.save(checkpoint, tmp / "nan.ckpt")
    python = f"{BIN}/python -c"
    return [
        (
            "#30.1 file-size limit during a checkpoint save",
            "sh",
            [f"ulimit -f 1024; {BIN}/cnnlab-train data=tiny trainer.max_epochs=1 hydra.run.dir={tmp}/efbig"],
        ),
        (
            "#30.2 full disk (a 64 KB tmpfs as the run dir)",
            "train",
            TINY + [f"hydra.run.dir={tmp}/full0"],
            full_disk(tmp / "full0"),
        ),
        (
            "#30.3 compare under a file-size limit",
            "sh",
            [f"ulimit -f 4; {BIN}/cnnlab-compare {tmp}/good --out {tmp}/cmp_efbig"],
        ),
        ("#30.4 an image folder with a single class", "train", [*TINY[1:3], *IMG, f"data.root={one_class}"]),
        ("#30.5 a truncated PNG, in memory", "train", [*TINY[1:3], *IMG, f"data.root={damaged_pics}"]),
        (
            "#30.5 a truncated PNG, streamed",
            "train",
            [*TINY[1:3], *IMG, "data.max_memory_mb=0", f"data.root={damaged_pics}"],
        ),
        ("#30.5 a stray notes.txt and a dangling link (trains)", "train", [*TINY[1:3], *IMG, f"data.root={strays}"]),
        (
            "#30.6 a YAML syntax error in a user's config",
            "train",
            ["--config-dir", str(conf), "model=broken", *TINY[:3]],
        ),
        ("#30.7 a valid config in --config-dir (trains)", "train", ["--config-dir", str(conf), "model=mine", *TINY]),
        ("#30.8 eval of a checkpoint whose weights are all NaN", "eval", [f"ckpt_path={tmp}/nan.ckpt", "data=tiny"]),
        ("#30.9 an int data.image_size (trains)", "train", TINY + ["data.image_size=48"]),
        ("#30.10 the notebook API given a wrong type", "sh", [f"{python} 'import cnnlab; cnnlab.load_sweep(1.5)'"]),
    ]


# The fourth pass (issue #30): the file system's limits, user config folders, user images and commands run at once.
# A case's command is a console script (train, eval, compare, rf, params, ...) or `sh`, whose one argument is a
# shell line (for two commands at once); a fourth element is a context manager that runs beside the command.
IMG = ["data=imagefolder", "data.num_workers=0", "data.image_size=[16,16]", "model.depth=2", "lab_images=false"]


def picture_folder(root: Path, how: str) -> Path:
    """An image folder of two or three classes (12 pictures each) with one hostile trait `how`."""
    import numpy as np
    from PIL import Image

    gen = np.random.default_rng(0)
    classes = ["cat", "dog"] + (["fox"] if how in ("empty class", "class symlink", "hidden files") else [])
    for c in classes:
        folder = root / c / ("sub" if how == "nested" else "")
        folder.mkdir(parents=True, exist_ok=True)
        if how == "empty class" and c == "fox" or how == "class symlink" and c == "fox":
            continue
        for i in range(12):
            pixels = gen.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if how == "1x1":
                image.resize((1, 1)).save(folder / f"{i}.png")
            elif how == "uppercase":
                image.save(folder / f"{i}.{'PNG' if i % 2 else 'JPG'}", format="PNG" if i % 2 else "JPEG")
            elif how == "16-bit":
                Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(folder / f"{i}.png")
            elif how == "cmyk":
                image.convert("CMYK").save(folder / f"{i}.jpg")
            elif how == "animated gif":
                frames = [Image.fromarray(np.roll(pixels, k, 0)) for k in range(3)]
                frames[0].save(folder / f"{i}.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
            else:
                image.save(folder / f"{i}.png")
        if how == "hidden files":
            (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
            (folder / "._0.png").write_bytes(b"\0\5\x16\x07 AppleDouble")  # macOS resource fork, not a PNG
    if how == "hidden files":  # a hidden folder beside the classes
        (root / ".thumbnails").mkdir()
        (root / ".thumbnails" / "0.png").write_bytes((root / "cat" / "0.png").read_bytes())
    if how == "class symlink":
        (root / "fox").rmdir()
        (root / "fox").symlink_to(root / "cat", target_is_directory=True)
    if how == "symlink loop":
        (root / "cat" / "loop").symlink_to(root, target_is_directory=True)
    return root


def user_configs(root: Path) -> Path:
    """A --config-dir of user configs, each broken (or shadowing a built-in one) in one way."""
    (root / "model").mkdir(parents=True)
    (root / "model" / "cnn.yaml").write_text(  # shadows conf/model/cnn.yaml: a 1-block CNN
        "_target_: cnnlab.models.cnn.ConvNet\ndepth: 1\nwidth: 4\nnum_classes: ${data.num_classes}\n"
        "in_channels: ${data.in_channels}\nimage_size: ${data.image_size}\n"
    )
    (root / "model" / "no_target.yaml").write_text("depth: 2\nwidth: 8\n")
    (root / "model" / "wrong_target.yaml").write_text("_target_: cnnlab.models.nope.Net\nwidth: 8\n")
    (root / "model" / "not_a_model.yaml").write_text("_target_: collections.OrderedDict\n")
    (root / "model" / "missing_default.yaml").write_text("defaults:\n  - cnn_base\n  - _self_\nwidth: 8\n")
    (root / "model" / "bad_interpolation.yaml").write_text(
        "_target_: cnnlab.models.cnn.ConvNet\nwidth: ${data.no_such_key}\nnum_classes: ${data.num_classes}\n"
        "in_channels: ${data.in_channels}\nimage_size: ${data.image_size}\n"
    )
    (root / "mytrain.yaml").write_text("defaults:\n  - train\n  - override data: no_such_data\n  - _self_\n")
    return root


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only for the command (a read-only tmpfs as root, who ignores modes; else chmod 555)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[None]:
    """`folder` on a 64 KiB tmpfs, filled up (root only; without root the case runs on the ordinary disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    try:
        with contextlib.suppress(OSError):
            (folder / "filler").write_bytes(b"x" * 200_000)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextlib.contextmanager
def training_beside(run_dir: Path, tmp: Path, *extra: str) -> Iterator[None]:
    """A cnnlab-train in `run_dir` held in its first batch (tests/test_pinned_behaviours.py's WaitForFile) while the
    case's command runs; released and finished afterwards."""
    gate, started = tmp / f"{run_dir.name}.go", tmp / f"{run_dir.name}.started"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "tests")}
    proc = subprocess.Popen(
        [
            str(BIN / "cnnlab-train"),
            *TINY,
            *extra,
            *([] if any(e.startswith("resume=") for e in extra) else [f"hydra.run.dir={run_dir}"]),
            "+callbacks.gate._target_=test_pinned_behaviours.WaitForFile",
            f"+callbacks.gate.path={gate}",
            f"+callbacks.gate.started={started}",
        ],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    try:
        yield
    finally:
        gate.write_text("go")
        proc.wait(timeout=300)
        gate.unlink(missing_ok=True)
        started.unlink(missing_ok=True)


def fourth_pass(tmp: Path) -> list[tuple]:
    """Issue #30's fresh cases (their fixtures are made here; the `good` run and `sweep` exist already)."""
    pics = {
        how: picture_folder(tmp / "pics" / how.replace(" ", "_"), how)
        for how in (
            "nested",
            "uppercase",
            "1x1",
            "16-bit",
            "cmyk",
            "animated gif",
            "empty class",
            "hidden files",
            "class symlink",
            "symlink loop",
        )
    }
    conf = user_configs(tmp / "userconf")
    (tmp / "sweeplink").symlink_to(tmp / "good", target_is_directory=True)
    (tmp / "no_classes").mkdir()
    (tmp / "emptylink").symlink_to(tmp / "empty", target_is_directory=True)
    (tmp / "empty").mkdir()
    (tmp / "out_file").write_text("not a folder")
    long_name = "n" * 255
    deep = "/".join(["d" * 250] * 16)  # ~4,000 characters: the run dir's files pass PATH_MAX (4,096)
    good = f"{tmp}/good"
    ckpt = f"ckpt_path={good}/checkpoints/best.ckpt"
    rows: list[tuple] = [
        # the file system's limits
        (
            "4th: run dir under a read-only parent",
            "train",
            TINY + [f"hydra.run.dir={tmp}/ro/run"],
            read_only(tmp / "ro"),
        ),
        ("4th: run dir on a path with spaces", "train", TINY + [f"hydra.run.dir={tmp}/with space/run"]),
        ("4th: run dir on a unicode path", "train", TINY + [f"hydra.run.dir={tmp}/ünïcødé/run"]),
        ("4th: run dir on a unicode path, quoted", "train", TINY + [f'hydra.run.dir="{tmp}/ünï cødé/run"']),
        ("4th: run dir with a 255-character name", "train", TINY + [f"hydra.run.dir={tmp}/{long_name}"]),
        ("4th: run dir with a 256-character name", "train", TINY + [f"hydra.run.dir={tmp}/{long_name}n"]),
        ("4th: run dir near PATH_MAX", "train", TINY + [f"hydra.run.dir={tmp}/{deep}"]),
        (
            "4th: sweep dir that is a link to an empty folder",
            "train",
            ["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp}/emptylink"],
        ),
        ("4th: run dir on a full disk", "train", TINY + [f"hydra.run.dir={tmp}/full/run"], full_disk(tmp / "full")),
        ("4th: compare a run dir given as a link", "compare", [f"{tmp}/sweeplink", "--out", f"{tmp}/cmp_link"]),
        ("4th: compare --out read-only", "compare", [good, "--out", f"{tmp}/ro2/report"], read_only(tmp / "ro2")),
        (
            "4th: compare --out on a full disk",
            "compare",
            [good, "--out", f"{tmp}/full2/report"],
            full_disk(tmp / "full2"),
        ),
        ("4th: compare --out a file", "compare", [good, "--out", f"{tmp}/out_file"]),
        ("4th: rf --out read-only", "rf", ["--out", f"{tmp}/ro3/rf"], read_only(tmp / "ro3")),
        (
            "4th: rf --out on a full disk",
            "rf",
            ["--out", f"{tmp}/full3/p"],
            full_disk(tmp / "full3"),
        ),
        ("4th: pooling --out a file", "pooling", ["--out", f"{tmp}/out_file"]),
        ("4th: eval into a read-only folder", "eval", [ckpt, f"hydra.run.dir={tmp}/ro4/ev"], read_only(tmp / "ro4")),
        # user config folders
        ("4th: --config-dir shadows model/cnn", "train", ["--config-dir", str(conf), *TINY[:3]]),
        ("4th: user model without _target_", "train", ["--config-dir", str(conf), *TINY[:3], "model=no_target"]),
        (
            "4th: user model with a wrong _target_",
            "train",
            ["--config-dir", str(conf), *TINY[:3], "model=wrong_target"],
        ),
        (
            "4th: user model whose _target_ is no model",
            "train",
            ["--config-dir", str(conf), *TINY[:3], "model=not_a_model"],
        ),
        (
            "4th: defaults list names a missing config",
            "train",
            ["--config-dir", str(conf), *TINY[:3], "model=missing_default"],
        ),
        (
            "4th: interpolation to a missing key",
            "train",
            ["--config-dir", str(conf), *TINY[:3], "model=bad_interpolation"],
        ),
        (
            "4th: primary config overrides to missing data",
            "train",
            ["--config-dir", str(conf), "--config-name", "mytrain", *TINY[1:3]],
        ),
        ("4th: --config-dir that does not exist", "train", ["--config-dir", f"{tmp}/no_conf", *TINY]),
        # user images
        *[(f"4th: image folder: {how}", "train", [*TINY[1:3], *IMG, f"data.root={pics[how]}"]) for how in pics],
        (
            "4th: image folder: an int image_size and grayscale of RGB",
            "train",
            [
                *TINY[1:3],
                *IMG[:2],
                "data.image_size=12",
                "data.in_channels=1",
                "model.depth=2",
                f"data.root={pics['uppercase']}",
            ],
        ),
        (
            "4th: image folder: image_size larger than the pictures",
            "train",
            [*TINY[1:3], *IMG[:2], "data.image_size=[256,256]", f"data.root={pics['1x1']}"],
        ),
        ("4th: image folder: a file as data.root", "train", [*TINY[1:3], *IMG, f"data.root={tmp}/out_file"]),
        ("4th: image folder: a root with no class folders", "train", [*TINY[1:3], *IMG, f"data.root={tmp}/no_classes"]),
        # commands at once
        (
            "4th: two cnnlab-compare writing the same --out",
            "sh",
            [
                f"{BIN}/cnnlab-compare {good} --out {tmp}/cmp_twice & first=$!; "
                f"{BIN}/cnnlab-compare {good} --out {tmp}/cmp_twice; second=$?; wait $first; first=$?; "
                'echo "exit codes: $first $second"; exit $((first | second))'
            ],
        ),
        (
            "4th: eval of a run still training (last.ckpt not yet written)",
            "eval",
            [f"ckpt_path={tmp}/busy/checkpoints/last.ckpt"],
            training_beside(tmp / "busy", tmp),
        ),
        (
            "4th: eval of a run still training (its folder)",
            "eval",
            [f"ckpt_path={tmp}/busy2"],
            training_beside(tmp / "busy2", tmp),
        ),
        (
            "4th: compare a run still training",
            "compare",
            [f"{tmp}/busy3", "--out", f"{tmp}/cmp_busy"],
            training_beside(tmp / "busy3", tmp),
        ),
        (
            "4th: a new run into a run dir that is training",
            "train",
            TINY + [f"hydra.run.dir={tmp}/busy4"],
            training_beside(tmp / "busy4", tmp),
        ),
        (
            "4th: resume while another resume runs",
            "train",
            TINY + ["trainer.max_epochs=3", f"resume={tmp}/busy5"],
            training_beside(tmp / "busy5", tmp, "trainer.max_epochs=3", f"resume={tmp}/busy5"),
        ),
        (
            "4th: lab tool --ckpt of a run still training",
            "rf",
            ["--ckpt", f"{tmp}/busy6/checkpoints/last.ckpt", "--out", f"{tmp}/rf_busy"],
            training_beside(tmp / "busy6", tmp),
        ),
    ]
    return rows


def is_file(path: Path) -> bool:
    """Path.is_file, but False for a path the OS refuses to look at (a name over NAME_MAX, past PATH_MAX)."""
    try:
        return path.is_file()
    except OSError:
        return False


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of an existing run directory, to show that a refused command changed none of them."""
    try:
        return {str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} if run_dir.is_dir() else {}
    except OSError:  # a path past PATH_MAX: the report cannot look inside
        return {}


def short(text: str, tmp: Path) -> str:
    """`text` with the temp folder as $TMP and long runs of one letter (the NAME_MAX cases) as <250 × d>."""
    text = text.replace(str(tmp), "$TMP")
    return re.sub(r"([a-z])\1{40,}", lambda m: f"<{len(m.group(0))} × {m.group(1)}>", text)


def interrupted_run(run_dir: Path, tmp: Path) -> None:
    """A 3-epoch tiny run stopped by SIGINT in its second epoch (tests/helpers.py's SignalAt): one to resume."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "tests")}
    extra = ["trainer.max_epochs=3", "+callbacks.sig._target_=helpers.SignalAt", "+callbacks.sig.epoch=1"]
    subprocess.run(
        [str(BIN / "cnnlab-train"), *TINY, *extra, f"hydra.run.dir={run_dir}"], cwd=tmp, env=env, capture_output=True
    )


def main() -> None:
    """Run every case and write the markdown table (with --select: only the cases whose name holds one of the
    given texts, printed with what each wrote, and docs/robustness.md left alone)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--select", action="append", default=[], help="run only cases whose name holds this text")
    parser.add_argument("--list", action="store_true", help="list the cases' names and exit")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if options.list:
            print("\n".join(case[0] for case in cases(tmp)))
            return
        subprocess.run(
            [str(BIN / "cnnlab-train"), *TINY, f"hydra.run.dir={tmp}/good"], cwd=tmp, check=True, capture_output=True
        )
        (tmp / "a_file").write_text("not a folder")
        (tmp / "sweep" / "0" / ".hydra").mkdir(parents=True)  # an earlier sweep's first job
        (tmp / "dangling").symlink_to(tmp / "nowhere")
        import torch

        checkpoint = torch.load(tmp / "good/checkpoints/best.ckpt", weights_only=False)
        checkpoint["state_dict"].popitem()  # one weight gone
        torch.save(checkpoint, tmp / "damaged.ckpt")
        selected = [
            (i, case)
            for i, case in enumerate(cases(tmp))
            if not options.select or any(t in case[0] for t in options.select)
        ]
        if any("resume while another resume" in case[0] for _, case in selected):
            interrupted_run(tmp / "busy5", tmp)
        for i, (what, command, args, *beside) in selected:
            run_dir = tmp / f"run{i}"
            given = ("hydra.run.dir=", "hydra.sweep.dir=", "resume=")  # resume= picks the run dir
            explicit = [a for a in args if a.startswith(given)]
            if "--out" in args:  # compare and the lab tools: the report's folder
                explicit = [f"--out={args[args.index('--out') + 1]}"]
            if command == "sh":  # a shell line: the folder it names
                explicit = re.findall(r"(?:hydra.run.dir=|--out )(\S+)", args[0])[:1]
                explicit = [f"dir={explicit[0]}"] if explicit else []
            run_dir = Path(explicit[0].split("=", 1)[1].strip("\"'")) if explicit else run_dir
            if command == "sh":
                full = ["bash", "-c", *args]
            elif command in ("train", "eval"):
                full = [str(BIN / f"cnnlab-{command}"), *args] + ([] if explicit else [f"hydra.run.dir={run_dir}"])
            else:
                full = [str(BIN / f"cnnlab-{command}"), *args]
            # an output folder inside a finished run: that run's files are the ones to watch
            run_dir = next((p for p in (run_dir, *run_dir.parents) if is_file(p / "metrics.json")), run_dir)
            with beside[0] if beside else contextlib.nullcontext():
                before = snapshot(run_dir)
                proc = subprocess.run(full, cwd=tmp, capture_output=True, text=True, timeout=300)
                after = snapshot(run_dir)  # inside: a read-only or full mount is gone afterwards
                metrics = run_dir / "metrics.json"
                record = json.loads(metrics.read_text()) if is_file(metrics) else {}
                kept = record.get("status", "—")
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
            errors = [line.split("] - ", 1)[-1] for line in lines if "[ERROR]" in line or line.startswith("error: ")]
            warnings = [line.split("] - ", 1)[-1] for line in lines if "[WARNING]" in line]
            if errors:
                shown = errors[0].removeprefix("error: ")
            elif proc.returncode == 0 and lines:  # a run that worked: its warnings, then its result
                result = f"test_acc {record['test_acc']:.3f}" if record.get("test_acc") is not None else None
                shown = " … ".join([*warnings, result or lines[-1].split("] - ", 1)[-1]])
            elif "Traceback" in proc.stderr:  # an exception (the notebook API's): the line that names it
                shown = proc.stderr.strip().splitlines()[-1]
            else:
                shown = " ".join(lines)
            shown = shown[:400]
            if before:
                kept = f"{kept}, {'unchanged' if after == before else 'CHANGED'}"
            shown_args = short(" ".join(a for a in args if a not in TINY), tmp)
            traceback = "yes" if "Traceback" in proc.stdout + proc.stderr else "no"
            shown_command = (
                short(args[0].replace(f"{BIN}/", ""), tmp) if command == "sh" else f"cnnlab-{command} {shown_args}"
            )
            rows.append(
                f"| {what} | `{shown_command}` | {proc.returncode} | {traceback} | {kept} | "
                f"{short(shown, tmp).replace('|', '/')} |"
            )
            print(what, proc.returncode, flush=True)
            if options.select:  # what a reader checks by hand: every line, and what the command wrote
                wrote = sorted(set(after) - set(before))
                print(f"  {len(lines)} lines; wrote {len(wrote)} files in {short(str(run_dir), tmp)}")
                for name in wrote[:4]:
                    print("   wrote", short(name, tmp), len(after[name]), "bytes")
                for line in lines[-6:]:
                    print("   >", short(line, tmp)[:500])
        if options.select:
            print("\n".join(rows))
            return
    OUT.write_text(HEADER + "\n".join(rows) + "\n" + FOOTER)
    print(f"wrote {OUT}")


HEADER = """# Robustness: what bad input prints

Generated by `.venv/bin/python scripts/robustness_report.py` (each row is a real run; `data=tiny` and
`trainer.max_epochs=1` were added to the training rows and are not shown). "metrics.json" is the status the
run directory records afterwards: "—" means the command was refused before it wrote anything (every value is
checked first); for a directory that already held a run, whether any of its files changed.

| bad input | command | exit | traceback | metrics.json | what it printed |
|---|---|---|---|---|---|
"""

FOOTER = """
Every value is checked against the type of its default, its range, and the keys the config has, and the data
is read, before any file is written (`cnnlab.config.validate`, then each command's check;
`tests/test_validation.py` gives every leaf key a wrong-typed value). Damaged data files are never deleted or
overwritten: the error names the file and the fix. In a multirun every swept value's type, range and key are
checked before the first job starts (`-m seed=0,abc` is one line, exit 2, nothing written); what needs the model
or the data (a depth the image cannot take) is each job's check: that job records its error in its own new
`metrics.json` and the sweep goes on.

## Interruption, resume and faults (tested in `tests/test_robustness.py`)

- SIGINT or SIGTERM during training: the current batch finishes, `checkpoints/interrupted.ckpt` is saved
  (the weights at that moment, for inspection), `metrics.json` says `interrupted`, the exit code is
  128 + the signal (130 / 143), and the log prints the resume command. A second Ctrl+C stops at once, with
  exit 130 and an `interrupted` record (no checkpoint of that moment; `last.ckpt` holds the last whole epoch).
  A signal during an epoch's validation (the last epoch's too) or while its checkpoints are saved stops the run
  the same way at the end of that validation batch (one in the last epoch's validation used to be lost: the run
  went on to its test and recorded `completed`, exit 0).
  Ctrl+C while the command imports its libraries prints one line and exits 130 (the signal is held until the
  imports end: raised inside one, a library's bare `except` swallowed it). Ctrl+C after the checks but before
  training (loading data, building the trainer) records `interrupted`, exit 130; one that lands while the run
  directory is being opened removes what was begun. SIGINT, SIGTERM or SIGUSR2 after the run directory opened but
  outside the training loop (building the model and trainer, the final test) stops the run the same way: an
  `interrupted` record naming the signal, exit 128 + the signal (a SIGTERM there used to kill the process with no
  record, and a Ctrl+C in the test ended in Lightning's exit 1 with no record).
- A run directory is held under an exclusive lock (`flock` on the folder) while its job runs: a second
  `cnnlab-train` aimed at it is refused in one line and changes nothing. The lock ends with the process.
- `checkpoints/last.ckpt` is written at the end of every epoch, whatever val/acc did: in a completed run it
  holds the final weights. `best.ckpt` is the best by val/acc.
- `cnnlab-train resume=<run dir>` continues in that directory from `checkpoints/last.ckpt` (the end of the
  last completed epoch); a run stopped inside its first epoch restarts from the beginning. The original
  `.hydra/config.yaml` is kept and the resume's config goes to `.hydra/resume-<time>/`. Because shuffling,
  augmentation and dropout are seeded from (seed, epoch), a CPU run interrupted anywhere (inside the first
  epoch, at an epoch boundary, inside the last) and resumed ends with bit-identical weights and the same
  metrics as an uninterrupted one. `ckpt_path=last` with `hydra.run.dir=<run dir>` does the same. A resume of
  a completed run, with another model config, or with another `trainer.max_epochs`/`max_steps` under a
  schedule laid out over the run's length, is refused before anything is written. So is a resume with another
  seed, data, augmentation, optimiser, schedule or label smoothing than the checkpoint's (only where and how the
  data is read may change: `data_dir`, `num_workers`, ...), from a `last.ckpt` whose weights do not fit its model,
  of a run whose `last.ckpt` is gone though an epoch finished (restarting would discard it), of an evaluation's
  folder, and a start from a checkpoint with no epoch left to train; `resume=` under `-m` is refused too.
  So are a debug pass (`debug=fdr|limit|overfit|profiler`) aimed at a run with `resume=` (a few batches must
  never mark a run `completed`), and the resume of a run trained with `callbacks=none`, which saved no checkpoint
  (restarting it would silently discard the epochs it finished).
- A NaN or infinite loss stops the run naming the step and suggesting causes (learning rate, precision)
  before any checkpoint stores the broken weights; `last.ckpt` is the last good one and `metrics.json`
  says `failed`.
- A run directory that already holds `metrics.json` is finished: no later command (train, eval, resume,
  compare) changes a file in it, except its own resume. An output folder that is or lies inside a finished run
  (`hydra.sweep.dir=<run>`, `hydra.run.dir=<run>/x`, `--out <run>/figures` of a lab tool or `cnnlab-compare`) is
  refused before anything is written. Hydra writes nothing into a run directory itself;
  cnnlab saves `.hydra/` and the log once the directory is accepted. `cnnlab-eval` writes into its own
  directory. Records are written atomically, by rank zero only (DDP runs write one record).
- Checkpoints are written to a hidden `.<name>.partial` beside them and renamed into place, so a full disk or a
  kill during a save leaves the previous checkpoint whole; a failed write removes its partial file (the record's
  temp file too), and a resume removes one a killed process left. A full disk, an exhausted quota or a
  read-only file system ends the run in one line ("the disk refused a write writing <file> (No space left on
  device). Fix: ...") with a `failed` record where one can still be written, exit 2.
- A failed CIFAR-10 download removes its lock file and the folders it created for `data.data_dir`.
- Before a run directory opens, the check also reads the data and refuses, in one line each: a validation split
  that leaves no training image, an epoch of no batches (`trainer.limit_train_batches=0`, or `experiment=cpu94`'s
  batch of 2,000 with `drop_last` on fewer images), `debug=overfit` with batches from a DataLoader, more
  `threads` than cores, a precision that casts the whole model (`64-true`, `bf16-true`, `16-true`: the batches
  are float32), a logger whose package is missing (`logger=mlflow` names the extra to install), and any
  trainer value Lightning's Trainer refuses (`trainer.devices=0`, an unknown `strategy`, a `limit_*_batches`
  fraction above 1: the Trainer is built once, bare, in the check). Trainer arguments added with `+trainer.<key>`
  get their ranges checked like the config's own keys (`accumulate_grad_batches` and `check_val_every_n_epoch`
  >= 1, `gradient_clip_val` >= 0). `cnnlab-eval` checks the device, the precision, `threads` and the trainer the
  same way before its directory opens.
- Output folders: a sweep dir that already holds a sweep (its jobs would be refused one by one), a dangling link,
  the current folder, and a folder that holds runs below it (`hydra.run.dir=outputs`) are refused for a new run or
  sweep, in one line, before anything is written. A Ctrl+C in a sweep whose jobs run in this process (Hydra's
  basic launcher) stops the sweep, exit 130, after the job it landed in records `interrupted`; under joblib or
  submitit a signal is that job's own, and the sweep goes on.
- `cnnlab-eval`: `data.<key>=...` changes that key of the run's own data (`data=<name>` picks other data); the
  run's training augmentation is not checked against other data (a test set is never augmented); the checkpoint's
  weights are loaded into its model before the eval's folder opens, so a damaged file is one line.
- `cnnlab-compare`: a record holding NaN or an infinity, or a damaged `overrides.yaml`, is an `unreadable` row and
  does not make every key "swept"; job folders linked in are followed, a job given twice counts once; the report
  is made in a hidden folder and renamed into place, so a failed or stopped report leaves the earlier one whole.
  Records store NaN and infinities as `null` (bare `NaN` is not JSON).
- Lab tools take only the options they use, check them and `--out` before printing anything, and with `--ckpt`
  refuse a model override that differs from the checkpoint's model (data overrides apply, as in `cnnlab-eval`).
- Optuna: `hydra.sweeper.n_trials=0` and a storage URL Optuna cannot open each end in one line, exit 2.
- Hydra's syntax: `-m` after the overrides gets the command reordered; a value with a non-ASCII letter (or a
  character the override grammar reserves) gets its quoted form, `'key="value"'`.
- The notebook API: `cnnlab.train([... "hydra.run.dir=X"])` writes into X; a refused `cnnlab.train` leaves no
  folder behind; `cnnlab.load_sweep` and `cnnlab.load_run` refuse a path that does not exist.
- Parallel jobs preparing the same `data_dir` take a file lock: one downloads, the others wait and read.

## The file system's limits, user configs and user images (issue #30, rows `#30.N`)

- A file-size limit (`ulimit -f`; Python ignores SIGXFSZ, so the write fails with EFBIG) is handled like a full
  disk: one line naming the file being written, a `failed` record where one still fits, exit 2. A full disk at the
  run directory's first write leaves nothing behind; later, the run gets a `failed` record when one can be
  written, else the line says that the run has no metrics.json and why. `cnnlab-compare` and the lab tools under
  such a limit print one line and leave no folder or table.
- An image folder is checked at setup, before the run directory opens: fewer than two classes, a file whose
  header says it is an image but whose data ends early (a truncated PNG or JPEG, named), and a later decode
  failure names the file too. Files that are not images (a stray `notes.txt`, a dangling link) are skipped and
  counted in one warning that says why.
- A config in `--config-dir` (or `hydra.searchpath`) is a valid choice for cnnlab's own check; a YAML syntax error
  in one is one line naming the file, line and column; a command-line interpolation that cannot resolve is one
  line; a defaults-list entry that names a missing option says to change that entry. Hydra's own flags work.
- `cnnlab-eval` refuses a checkpoint with NaN or infinite weights in one line before its folder opens.
- `cnnlab-compare` on a sweep whose jobs are still running reports the finished ones and says how many are still
  running; the notebook API gives wrong argument types the CLI's one `ConfigError` line.
"""

if __name__ == "__main__":
    main()
