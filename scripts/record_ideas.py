"""The CPU record's ideas (issue #31), each trained with `cnnlab-train experiment=cpu94` for several seeds: one table.

Each idea is a set of overrides on experiment=cpu94, an epoch count (a fraction trains ceil(epochs × steps per
epoch) steps, as the hiverge record counts them) and a batch size. A batch other than the recipe's 2,000 rescales
the learning rates: the SGD groups' lr in proportion (the same step per training image under PyTorch's mean-reduced
loss, so lr × weight_decay per image is unchanged too) and Muon's filter_lr with the square root of the batch ratio
(an orthogonalised step has a fixed size, so more steps per epoch need smaller ones; the record's 0.205 at batch
1,536 against airbench94_muon's 0.24 at 2,000 is a ratio of 0.85, the square root rule's 0.88).

    python scripts/record_ideas.py --data-dir ../shared/data --seeds 0 1 2 --jobs 4 --out record_ideas
    python scripts/record_ideas.py --list

Prints a markdown table: per idea, the mean ± standard deviation over seeds of test accuracy with TTA and without,
the share of test images given the extra TTA views (selective TTA), the trained images per second and each run's
wall time. Jobs run side by side with --jobs (a GPU has room for several; on a CPU keep 1). Time on a CPU is
measured apart (docs/benchmarks.md): accuracy does not depend on where a run trains, its speed does.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 50_000  # CIFAR-10's training split; cpu94 trains on all of it (val_size=0)
RECIPE_BATCH, RECIPE_LR, RECIPE_FILTER_LR = 2000, 1.656, 0.24  # conf/optim/muon.yaml, conf/experiment/cpu94.yaml
JITTER = "augment=alt_flip_translate_jitter"

# name → (epochs, batch, overrides)
IDEAS: dict[str, tuple[float, int, list[str]]] = {
    "cpu94": (8, 2000, []),
    "jitter, 7 epochs": (7, 2000, [JITTER]),
    "jitter, 7.5 epochs": (7.5, 2000, [JITTER]),
    "jitter, 6.5 epochs": (6.5, 2000, [JITTER]),
    "jitter, 6 epochs": (6, 2000, [JITTER]),
    "selective TTA p=0.7": (8, 2000, ["tta_select=0.7"]),
    "SiLU": (8, 2000, ["model.activation=silu"]),
    "batch 1000": (8, 1000, []),
    "batch 1000, 7 epochs": (7, 1000, []),
    "SiLU, jitter, 7 epochs": (7, 2000, ["model.activation=silu", JITTER]),
    "batch 1000, jitter, 7 epochs": (7, 1000, [JITTER]),
    "batch 1000, jitter, 7.5 epochs": (7.5, 1000, [JITTER]),
    "batch 1000, jitter, 6.5 epochs": (6.5, 1000, [JITTER]),
    "batch 1000, jitter, 6 epochs": (6, 1000, [JITTER]),
    "batch 500, jitter, 7 epochs": (7, 500, [JITTER]),
    "batch 500, jitter, 6 epochs": (6, 500, [JITTER]),
    "jitter, 8 epochs": (8, 2000, [JITTER]),
    "selective TTA p=0.5": (8, 2000, ["tta_select=0.5"]),
    "cpu94_fast": (7, 1000, ["experiment=cpu94_fast"]),  # the kept ideas, as conf/experiment/cpu94_fast.yaml
}


def overrides_for(epochs: float, batch: int, extra: list[str]) -> list[str]:
    """cnnlab-train overrides for an idea: epochs (whole or fractional), batch with rescaled learning rates."""
    if any(o.startswith("experiment=") for o in extra):  # another experiment sets its own epochs, batch and lr
        return extra
    steps_per_epoch = TRAIN_IMAGES // batch  # drop_last, as the recipe
    out = [f"trainer.max_epochs={math.ceil(epochs)}"]
    if epochs != int(epochs):
        out.append(f"++trainer.max_steps={math.ceil(epochs * steps_per_epoch)}")  # ++: not in every trainer config
    if batch != RECIPE_BATCH:
        ratio = batch / RECIPE_BATCH
        out += [
            f"data.batch_size={batch}",
            f"optim.lr={RECIPE_LR * ratio:.6g}",
            f"optim.filter_lr={RECIPE_FILTER_LR * math.sqrt(ratio):.6g}",
        ]
    return out + extra


def train(data_dir: Path, run_dir: Path, overrides: list[str], seed: int, threads: int | None) -> dict:
    """One cnnlab-train run in its own process; its metrics.json record plus the process's wall seconds."""
    experiment = next((o for o in overrides if o.startswith("experiment=")), "experiment=cpu94")
    overrides = [o for o in overrides if o != experiment]
    command = [sys.executable, "-m", "cnnlab.cli.train", experiment, f"data.data_dir={data_dir}"]
    command += [f"seed={seed}", "progress_bar=false", "logger=none", f"hydra.run.dir={run_dir}", *overrides]
    if threads:
        command.append(f"threads={threads}")
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    record_path = run_dir / "metrics.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if proc.returncode != 0 or record.get("status") != "completed":
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"{run_dir}: failed (exit {proc.returncode}): {tail[0]}", file=sys.stderr, flush=True)
        return {"failed": True, "wall_s": wall}
    share = record.get("test_tta_share")
    print(f"{run_dir}: test acc TTA {100 * record['test_acc_tta']:.2f}%, plain {100 * record['test_acc']:.2f}%, "
          f"TTA share {'—' if share is None else f'{100 * share:.1f}%'}, {record['train_images_per_s']:.0f} img/s, "
          f"{wall:.0f} s", flush=True)  # fmt: skip
    return {**record, "wall_s": wall}


def mean_sd(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """'m ± sd' over the seeds (sd omitted for one value); '—' when there is nothing to average."""
    values = [v * scale for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder holding cifar-10-batches-py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (a GPU: 4; a CPU: 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (default: torch's)")
    parser.add_argument("--only", nargs="+", default=None, metavar="IDEA", help="these ideas (names from --list)")
    parser.add_argument("--out", type=Path, default=Path("record_ideas"), help="run folders go under it")
    parser.add_argument("--list", action="store_true", help="print each idea's overrides and exit")
    args = parser.parse_args()
    unknown = sorted(set(args.only or []) - set(IDEAS))
    if unknown:
        parser.error(f"unknown idea {unknown[0]!r}. Valid: {', '.join(IDEAS)}. Fix: a name from --list")
    chosen = {name: IDEAS[name] for name in (args.only or IDEAS)}
    if args.list:
        for name, (epochs, batch, extra) in chosen.items():
            print(f"{name}: {' '.join(overrides_for(epochs, batch, extra))}")
        return
    if args.data_dir is None or not (args.data_dir / "cifar-10-batches-py").is_dir():
        parser.error(f"--data-dir {args.data_dir} holds no cifar-10-batches-py. Fix: --data-dir ../shared/data")
    jobs = [(name, seed) for name in chosen for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(
            zip(
                jobs,
                pool.map(
                    lambda job: train(
                        args.data_dir.resolve(),
                        (args.out / job[0].replace(" ", "_").replace(",", "").replace("=", "") / str(job[1])).resolve(),
                        overrides_for(*chosen[job[0]]),
                        job[1],
                        args.threads,
                    ),
                    jobs,
                ),
            )
        )
    print(f"\n{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}) per idea; mean ± sd\n")
    print("| idea | epochs | batch | test acc TTA % | plain % | TTA share % | trained img/s | wall s per run |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (epochs, batch, _) in chosen.items():
        runs = [r for (n, _), r in results.items() if n == name and not r.get("failed")]
        failed = sum(1 for (n, _), r in results.items() if n == name and r.get("failed"))
        cells = [
            mean_sd([r["test_acc_tta"] for r in runs], 100),
            mean_sd([r["test_acc"] for r in runs], 100),
            mean_sd([r.get("test_tta_share") for r in runs], 100, 1),
            mean_sd([r["train_images_per_s"] for r in runs], 1, 0),
            mean_sd([r["wall_s"] for r in runs], 1, 0),
        ]
        label = name + (f" ({failed} failed)" if failed else "")
        print(f"| {label} | {epochs:g} | {batch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
