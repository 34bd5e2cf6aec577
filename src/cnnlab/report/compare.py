"""`cnnlab-compare SWEEP_DIR [MORE_DIRS...]`: summary.csv, summary.md and plots for a sweep."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from cnnlab.errors import CnnlabError, written_file
from cnnlab.report.collect import collect_jobs, swept_axes
from cnnlab.report.gain import gain_rows, has_baseline
from cnnlab.report.plots import plot_aug_gain, plot_by_axis, plot_losses, plot_val_acc
from cnnlab.report.tables import gain_markdown, job_row, write_csv, write_markdown
from cnnlab.runs import check_report_dir, console_script

# Every file the report may write, by name: none may be a folder, and a report replaces only these.
REPORT_FILES = (
    "summary.csv",
    "summary.md",
    "aug_gain.csv",
    "val_acc_vs_epoch.png",
    "loss_curves.png",
    "acc_by_axis.png",
    "aug_gain.png",
)


def compare(roots: list[Path], out: Path) -> list[Path]:
    """Write the report for every job under `roots` into `out`; return the files written. The files are made in a
    hidden folder inside `out` and renamed into place at the end, so a report that fails (or is stopped) leaves
    an earlier report whole."""
    jobs = collect_jobs(roots)
    if not jobs:
        raise CnnlabError(f"no run directories (with .hydra/overrides.yaml) under {', '.join(map(str, roots))}")
    axes = swept_axes(jobs)
    fix = "pass --out <a writable folder that is not a run directory>."
    check_report_dir(out, "--out", fix)
    if folders := [name for name in REPORT_FILES if (out / name).is_dir()]:
        raise CnnlabError(f"--out {out} holds a folder named {folders[0]}, where the report writes a file. Fix: {fix}")
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first: removed again on a failure
    out.mkdir(parents=True, exist_ok=True)
    try:
        tables, plots = _write(jobs, axes, out)
    except BaseException as e:  # a full disk, a file size limit, Ctrl+C: the hidden folder is gone, and so are
        for folder in created:  # the folders made for the report (an --out that existed keeps its earlier report)
            try:
                folder.rmdir()
            except OSError:  # not empty
                break
        if isinstance(e, OSError) and ((name := written_file(e)) is None or Path(name).is_relative_to(out)):
            e.filename = str(out / Path(name).name if name else out)  # the report's file, not its hidden copy
        raise
    return [out / name for name in [*tables, *plots]]


def _write(jobs: list, axes: list[str], out: Path) -> tuple[list[str], list[str]]:
    """Write the report into a hidden folder inside `out`, then rename its files into `out`; return the names of
    the tables and of the plots."""
    with tempfile.TemporaryDirectory(prefix=".cnnlab-compare-", dir=out) as tmp_name:
        tmp = Path(tmp_name)
        plots = [plot_val_acc(jobs, axes, tmp), plot_losses(jobs, axes, tmp), plot_by_axis(jobs, axes, tmp)]
        write_csv([job_row(job, axes) for job in jobs], tmp / "summary.csv")
        tables, sections = ["summary.csv", "summary.md"], []
        gains = gain_rows(jobs, axes) if has_baseline(jobs, axes) else []
        if gains:  # the sweep asks "when does augmentation help?": answer it next to the summary
            plots.append(plot_aug_gain(jobs, axes, gains, tmp))
            write_csv(gains, tmp / "aug_gain.csv")
            tables.append("aug_gain.csv")
            sections = gain_markdown(gains)
        plots = [p for p in plots if p]
        write_markdown(jobs, axes, tmp / "summary.md", plots, sections)
        for name in [*tables, *plots]:
            os.replace(tmp / name, out / name)
    return tables, plots


def _main(argv: list[str] | None = None) -> None:
    """Write and print the report."""
    parser = argparse.ArgumentParser(prog="cnnlab-compare", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep (or run) directories")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the first directory)")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        raise CnnlabError(
            f"not a directory: {', '.join(map(str, missing))}. Fix: pass a sweep directory, "
            f"e.g. outputs/multirun/<date>/<time>."
        )
    written = compare(args.dirs, args.out or args.dirs[0])
    print((Path(written[1])).read_text())
    print("wrote", *map(str, written), sep="\n  ")


main = console_script(_main)

if __name__ == "__main__":
    main()
