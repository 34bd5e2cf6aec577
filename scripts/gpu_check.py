"""`make gpu-check`: what only a CUDA GPU can show, in one go (each step is cut off at its LIMITS: 7.5 min at most).

1. `pytest -m gpu tests/test_gpu.py`: the device-resident data path, bf16 (explicit and chosen by precision=auto),
   channels_last, compile=true, resume, and DDP where two GPUs are present; each run asserts what it did on the GPU.
2. `cnnlab-train experiment=fast94` on the real CIFAR-10 against airbench94 (`airbench.train94()`, Keller Jordan's
   PyPI package, 0.1.8) on the same card, then one markdown table: test accuracy with TTA, training seconds (cnnlab:
   its training batches only; airbench: its train94 call after its own one-step warm-up) and the whole process's
   seconds (start-up, data loading, compilation and the test included).

Without a CUDA GPU it prints one line and exits 0, so it is safe anywhere; CI never runs it.

Getting the data there. The device machine reaches no network, and each call carries at most 64 MiB of the working
tree, while CIFAR-10's pickles (cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta) are 177 MiB. So, here:

    make gpu-pack DATA=../shared/data   # = --pack DATA --wheels: gpu_data/cifar10.json, cifar10.part00..03, wheels/

writes the 7 files as one byte stream cut into 4 chunks of at most 48 MiB (3 chunks would need 59.1 MiB each, and
the tracked tree, ~3.9 MiB, travels too: about 1 MiB to spare), a manifest with each file's and chunk's size and
sha256, and the wheels the machine lacks (hydra-core, omegaconf, antlr4-python3-runtime, airbench; pure Python).
gpu_data/ is gitignored, and ignored files stay on a warm machine between calls, so four calls in a row, each
carrying one chunk, bring it all (the machine goes back after 30 s idle: make them back to back; the manifest and
wheels ride with the first). The last call reassembles and verifies the folder, installs what is missing and runs
the check:

    python3 scripts/gpu_check.py --unpack gpu_data data && make gpu-check DATA=data

--unpack names any chunk missing or damaged (then carry it again) and writes nothing until all are sound.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER = "cifar-10-batches-py"  # torchvision's layout, the one cnnlab reads
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
FILES = (*TRAIN_FILES, "test_batch", "batches.meta")
MANIFEST = "cifar10.json"
AIRBENCH = "airbench==0.1.8"
# Imports the GPU machine's python lacks (its image has torch, lightning, pytest, ...), with their pip names;
# cnnlab itself is read from this checkout's src/.
MISSING_THERE = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime"}
# Each step's limit, seconds, together under 8 minutes: GPU tests ~2 min (compile ~1), fast94 and airbench94 each
# well under a minute on an H200 (airbench94: 3.8 s of training on an A100).
LIMITS = {"tests": 270, "fast94": 120, "airbench": 60}

AIRBENCH_RUN = """
import importlib.metadata, json, time, torch, airbench
airbench.warmup94()  # one step: cuDNN's autotuning and the first kernels, as its README asks before timing
torch.cuda.synchronize(); start = time.perf_counter()
model = airbench.train94(verbose=False)
torch.cuda.synchronize(); seconds = time.perf_counter() - start
acc = airbench.evaluate(model, airbench.CifarLoader("cifar10", train=False, batch_size=2000), tta_level=2)
print("RESULT " + json.dumps({"train_s": seconds, "acc": acc, "version": importlib.metadata.version("airbench")}))
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(data_dir: Path, out: Path, chunk_bytes: int) -> list[str]:
    """Cut `data_dir/cifar-10-batches-py`'s files, concatenated, into chunks of at most `chunk_bytes` in `out`,
    with a manifest; returns the chunk names."""
    folder = Path(data_dir) / FOLDER
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        sys.exit(f"{folder} lacks {', '.join(missing)}. Fix: point --pack at the folder holding a full {FOLDER}.")
    contents = [(folder / name).read_bytes() for name in FILES]
    stream = b"".join(contents)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("cifar10.part*"):  # a re-pack with another chunk size leaves no stale chunk behind
        old.unlink()
    chunks = []
    for i, start in enumerate(range(0, len(stream), chunk_bytes)):
        piece = stream[start : start + chunk_bytes]
        chunks.append({"name": f"cifar10.part{i:02d}", "bytes": len(piece), "sha256": sha256(piece)})
        (out / chunks[-1]["name"]).write_bytes(piece)
    files = [{"name": n, "bytes": len(c), "sha256": sha256(c)} for n, c in zip(FILES, contents)]
    (out / MANIFEST).write_text(json.dumps({"files": files, "chunks": chunks}, indent=1) + "\n")
    return [c["name"] for c in chunks]


def unpack(src: Path, data_dir: Path) -> Path:
    """Check every chunk in `src` against the manifest, then write the files to `data_dir/cifar-10-batches-py`
    and check each of them; returns that folder. Nothing is written unless every chunk is sound."""
    if not (src / MANIFEST).is_file():
        sys.exit(f"{src / MANIFEST} is missing. Fix: carry it (with the first chunk), made here by --pack.")
    manifest = json.loads((src / MANIFEST).read_text())
    pieces, bad = [], []
    for chunk in manifest["chunks"]:
        path = src / chunk["name"]
        piece = path.read_bytes() if path.is_file() else b""
        if len(piece) != chunk["bytes"] or sha256(piece) != chunk["sha256"]:
            bad.append(f"{chunk['name']} ({'missing' if not path.is_file() else f'{len(piece):,} bytes, damaged'})")
        pieces.append(piece)
    if bad:
        sys.exit(f"{src}: {', '.join(bad)} of {len(pieces)} chunks. Fix: carry them again, then --unpack again.")
    stream, folder = b"".join(pieces), Path(data_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for entry in manifest["files"]:
        content = stream[start : start + entry["bytes"]]
        start += entry["bytes"]
        if sha256(content) != entry["sha256"]:
            sys.exit(f"{entry['name']} does not match its sha256 after reassembly. Fix: --pack again, carry all.")
        (folder / entry["name"]).write_bytes(content)
    return folder


def download_wheels(out: Path) -> None:
    """Wheels of the packages the GPU machine lacks, at the versions installed here (airbench pinned), into `out`."""
    from importlib.metadata import version

    out.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}=={version(name)}" for name in MISSING_THERE.values()] + [AIRBENCH]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), *specs], check=True)


def install_missing(wheels: Path) -> None:
    """Make what this python cannot import importable: cnnlab through PYTHONPATH (this checkout's src/, for every
    process started from here), the rest installed from `wheels` when that folder exists (the GPU machine has no
    network), else from PyPI."""
    if importlib.util.find_spec("cnnlab") is None:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    missing = [name for module, name in MISSING_THERE.items() if importlib.util.find_spec(module) is None]
    if importlib.util.find_spec("airbench") is None:
        missing.append(AIRBENCH)
    if missing:
        source = ["--no-index", "--find-links", str(wheels)] if wheels.is_dir() else []
        print(f"installing {', '.join(missing)}{f' from {wheels}' if source else ' from PyPI'}", flush=True)
        subprocess.run([*pip, *source, *missing], check=True)


def load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def write_airbench_files(data_dir: Path, dest: Path) -> None:
    """`dest/train.pt` and `dest/test.pt` as airbench's CifarLoader saves them from torchvision's CIFAR10 (it
    downloads only when they are absent): {'images': uint8 N×32×32×3, 'labels': int64 N, 'classes': names}."""
    import torch

    folder = Path(data_dir) / FOLDER
    classes = list(load_pickle(folder / "batches.meta")["label_names"])
    dest.mkdir(parents=True, exist_ok=True)
    for name, files in (("train.pt", TRAIN_FILES), ("test.pt", ("test_batch",))):
        entries = [load_pickle(folder / f) for f in files]
        images = torch.cat([torch.as_tensor(e["data"]) for e in entries]).view(-1, 3, 32, 32).permute(0, 2, 3, 1)
        labels = torch.tensor([label for e in entries for label in e["labels"]], dtype=torch.int64)
        torch.save({"images": images.contiguous(), "labels": labels, "classes": classes}, dest / name)


def timed(command: list[str], cwd: Path, limit: int) -> tuple[int | None, str, float]:
    """Run `command`, echoing its output as it comes; return (its exit code, None if it ran past `limit` seconds and
    was killed; its output; seconds)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(  # its own process group: a timeout or Ctrl+C ends its children too (DDP ranks)
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, process_group=0
    )
    timer = threading.Timer(limit, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seconds = time.perf_counter() - start
    return (None if seconds >= limit else code), "".join(lines), seconds


def run_fast94(data_dir: Path, run_dir: Path) -> list[str]:
    """cnnlab-train experiment=fast94, seed 0; returns its table row."""
    import yaml

    command = [sys.executable, "-m", "cnnlab.cli.train", "experiment=fast94", f"data.data_dir={data_dir}", "seed=0"]
    code, _, seconds = timed([*command, "progress_bar=false", f"hydra.run.dir={run_dir}"], REPO, LIMITS["fast94"])
    record_path = run_dir / "metrics.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if code is None or record.get("status") != "completed":
        why = "timed out" if code is None else record.get("error", f"exit {code}")
        return ["cnnlab fast94", f"failed: {str(why).splitlines()[0][:80]}", "", f"{seconds:.1f}"]
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    images = cfg["trainer"]["max_steps"] * cfg["data"]["batch_size"]  # drop_last: every step a full batch
    train_s = images / record["train_images_per_s"]
    return ["cnnlab fast94", f"{100 * record['test_acc_tta']:.2f}%", f"{train_s:.1f}", f"{seconds:.1f}"]


def run_airbench(data_dir: Path, work: Path) -> list[str]:
    """airbench.train94() in its own process, reading the CIFAR-10 written for it; returns its table row."""
    write_airbench_files(data_dir, work / "cifar10")  # CifarLoader reads 'cifar10/' under its working directory
    code, output, seconds = timed([sys.executable, "-c", AIRBENCH_RUN], work, LIMITS["airbench"])
    found = re.search(r"^RESULT (.*)$", output, re.MULTILINE)
    if found is None:
        return [AIRBENCH, "failed: " + ("timed out" if code is None else f"exit {code}"), "", f"{seconds:.1f}"]
    result = json.loads(found.group(1))
    return [
        f"airbench94 ({result['version']})",
        f"{100 * result['acc']:.2f}%",
        f"{result['train_s']:.1f}",
        f"{seconds:.1f}",
    ]


def check(data_dir: Path, wheels: Path) -> int:
    """The GPU tests, then fast94 against airbench94; returns the exit code."""
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU here (torch {torch.__version__} sees none); nothing checked.")
        return 0
    missing = [name for name in FILES if not (data_dir / FOLDER / name).is_file()]
    if missing:
        print(f"{data_dir / FOLDER} lacks {', '.join(missing)}. Fix: --unpack gpu_data {data_dir} (see --help).")
        return 2
    install_missing(wheels)
    print(f"gpu-check on {torch.cuda.get_device_name()} ({torch.cuda.device_count()} GPU), torch {torch.__version__}")
    tests, _, tests_s = timed(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"], REPO, LIMITS["tests"]
    )
    work = REPO / "outputs" / "gpu_check" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    rows = [run_fast94(data_dir.resolve(), work / "fast94"), run_airbench(data_dir.resolve(), work / "airbench")]
    table = [
        f"GPU tests: {'timed out' if tests is None else 'passed' if tests == 0 else 'FAILED'} in {tests_s:.0f} s",
        "",
        "| run (seed 0, same GPU) | test acc (TTA) | training s | process s |",
        "|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
    ]
    print("\n" + "\n".join(table))
    (work / "summary.md").write_text("\n".join(table) + "\n")
    return 0 if tests == 0 and not any(row[1].startswith("failed") for row in rows) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data"), help="folder holding cifar-10-batches-py")
    parser.add_argument("--gpu-data", type=Path, default=REPO / "gpu_data", help="chunks, manifest and wheels/")
    parser.add_argument("--pack", type=Path, metavar="DATA", help="cut DATA's CIFAR-10 into chunks in --gpu-data")
    parser.add_argument("--chunk-mib", type=float, default=48, help="largest chunk, MiB (default 48)")
    parser.add_argument("--wheels", action="store_true", help="download the wheels the GPU machine lacks")
    parser.add_argument("--unpack", nargs=2, type=Path, metavar=("SRC", "DATA"), help="chunks in SRC → DATA/" + FOLDER)
    args = parser.parse_args()
    if args.pack:
        chunks = pack(args.pack, args.gpu_data, int(args.chunk_mib * 2**20))
        print(f"{len(chunks)} chunks in {args.gpu_data}; carry one per call, back to back:")
        for i, name in enumerate(chunks):
            extra = f" {args.gpu_data.name}/{MANIFEST} {args.gpu_data.name}/wheels" if i == 0 else ""
            print(f"  call {i + 1}: carry {args.gpu_data.name}/{name}{extra}")
    if args.wheels:
        download_wheels(args.gpu_data / "wheels")
    if args.unpack:
        print(f"{unpack(*args.unpack)}: {len(FILES)} files, each matching its sha256")
    if not (args.pack or args.wheels or args.unpack):
        sys.exit(check(args.data, args.gpu_data / "wheels"))


if __name__ == "__main__":
    main()
