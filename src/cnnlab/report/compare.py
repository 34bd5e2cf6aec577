"""`cnnlab-compare SWEEP_DIR [MORE_DIRS...]`: summary.csv, summary.md and plots for a sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.report.collect import collect_jobs, swept_axes
from cnnlab.report.gain import gain_rows, has_baseline
from cnnlab.report.plots import plot_aug_gain, plot_by_axis, plot_losses, plot_val_acc
from cnnlab.report.tables import gain_markdown, job_row, write_csv, write_markdown
from cnnlab.runs import check_report_dir, console_script


def compare(roots: list[Path], out: Path) -> list[Path]:
    """Write the report for every job under `roots` into `out`; return the files written."""
    jobs = collect_jobs(roots)
    if not jobs:
        raise CnnlabError(f"no run directories (with .hydra/overrides.yaml) under {', '.join(map(str, roots))}")
    axes = swept_axes(jobs)
    check_report_dir(out, "--out", "pass --out <a writable folder that is not a run directory>.")
    out.mkdir(parents=True, exist_ok=True)
    plots = [plot_val_acc(jobs, axes, out), plot_losses(jobs, axes, out), plot_by_axis(jobs, axes, out)]
    write_csv([job_row(job, axes) for job in jobs], out / "summary.csv")
    tables, sections = [out / "summary.csv", out / "summary.md"], []
    gains = gain_rows(jobs, axes) if has_baseline(jobs, axes) else []
    if gains:  # the sweep asks "when does augmentation help?": answer it next to the summary
        plots.append(plot_aug_gain(jobs, axes, gains, out))
        write_csv(gains, out / "aug_gain.csv")
        tables.append(out / "aug_gain.csv")
        sections = gain_markdown(gains)
    plots = [p for p in plots if p]
    write_markdown(jobs, axes, out / "summary.md", plots, sections)
    return [*tables, *(out / p for p in plots)]


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
