"""Saving matplotlib figures the same way everywhere: headless, and byte-identical when re-run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as PNG without a version stamp (so re-runs give identical files) and close."""
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110, metadata={"Software": None})
    except OSError:  # a full disk or a file size limit: no partial PNG stays behind (cnnlab-rf left one)
        Path(path).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return Path(path)
