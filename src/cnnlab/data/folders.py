"""The layout of an image folder (`data=imagefolder`): which folders are classes, which files are images, which
split each file belongs to. Paths only, no decoding: cheap enough for a config resolver."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
SPLITS = ("train", "val", "test")
LAYOUT = (
    "root/<class>/<image> (one folder per class), or root/train/<class>/<image> with optional root/val/ and "
    "root/test/ laid out the same way"
)


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of `folder`, sorted by name (hidden ones such as .ipynb_checkpoints are skipped)."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


@dataclass(frozen=True)
class Layout:
    """Where a root's images are: the training pool's folder, and val/ and test/ when the root has them."""

    root: Path
    train: Path
    val: Path | None
    test: Path | None

    @property
    def classes(self) -> list[str]:
        """Class names: the training pool's subfolders, sorted (the label of a class is its index here)."""
        return [p.name for p in subfolders(self.train)]


def find_layout(root: str | Path | None) -> Layout:
    """The layout of `root`, or a DataError naming the problem and the layout expected."""
    if root is None or str(root).strip() == "":
        raise DataError(f"data=imagefolder needs a folder of images. Fix: data.root=DIR, laid out as {LAYOUT}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data.root={root} is not a folder ({root.resolve()} does not exist or is a file). "
            f"Fix: point data.root at a folder laid out as {LAYOUT}."
        )
    names = {p.name for p in subfolders(root)}
    if "train" in names:
        layout = Layout(root, root / "train", *(root / s if s in names else None for s in ("val", "test")))
    elif names & {"val", "test"}:
        raise DataError(
            f"data.root={root} has {'/'.join(sorted(names & {'val', 'test'}))}/ but no train/. "
            f"Fix: add {root}/train/<class>/..., or drop the split folders and keep one folder per class."
        )
    else:
        layout = Layout(root, root, None, None)
    if not layout.classes:
        raise DataError(f"data.root={root} has no class folders in {layout.train}. Fix: lay it out as {LAYOUT}.")
    return layout


def class_folder_count(root: str | Path | None) -> int:
    """The number of class folders under `root` (the `cnnlab_class_folders` resolver behind data.num_classes).

    1, a placeholder, when `root` is unset or unusable: the datamodule refuses such a root in one line when it is
    built, naming the problem. Raising here would surface as an interpolation error, and the defaults the config
    is type-checked against are composed without a root."""
    try:
        return len(find_layout(root).classes)
    except (DataError, OSError):
        return 1


def image_files(folder: Path, skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The image files under `folder` (recursively, hidden files and folders skipped), sorted by path. Other
    visible files are left out too, each added to `skipped` with why: "not an image" or "dangling link"."""
    found = []
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or p.is_dir():
            continue
        if p.is_symlink() and not p.exists():
            reason = "dangling link"
        elif p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            reason = "not an image"
        else:
            found.append(p)
            continue
        if skipped is not None:
            skipped.append((p, reason))
    return found


def skipped_summary(skipped: list[tuple[Path, str]], root: Path) -> str:
    """One line for the files `image_files` left out, e.g. "skipped 2 files: 1 not an image (a/notes.txt),
    1 dangling link (b/gone.png)" (at most 3 names per reason, relative to `root`)."""
    reasons: dict[str, list[Path]] = {}
    for path, reason in skipped:
        reasons.setdefault(reason, []).append(path)
    parts = []
    for reason, paths in reasons.items():
        names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths[:3]]
        more = f", and {len(paths) - 3} more" if len(paths) > 3 else ""
        parts.append(f"{len(paths)} {reason} ({', '.join(names)}{more})")
    return f"skipped {len(skipped)} file{'s' * (len(skipped) != 1)}: {', '.join(parts)}"


def labelled_files(
    folder: Path, classes: list[str], split: str, skipped: list[tuple[Path, str]] | None = None
) -> tuple[list[Path], list[int]]:
    """(paths, labels) of every image in the class folders of `folder`; a class folder not among `classes` (the
    training pool's) and an empty training class are refused. Files left out are added to `skipped`."""
    paths: list[Path] = []
    labels: list[int] = []
    index = {name: i for i, name in enumerate(classes)}
    seen: dict[Path, Path] = {}  # each class folder's real folder: a link to another class would label its images twice
    for sub in subfolders(folder):
        if (real := sub.resolve()) in seen:
            link, other = (sub, seen[real]) if sub.is_symlink() else (seen[real], sub)
            raise DataError(
                f"class folder {link} is a link to the class folder {other}: the same images would be labelled "
                f"both '{other.name}' and '{link.name}'. Fix: remove the link, or give {link.name}/ its own images."
            )
        seen[real] = sub
        if sub.name not in index:
            raise DataError(
                f"{split} folder {folder} has a class folder '{sub.name}' that the training images "
                f"({len(classes)} classes: {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}) lack. "
                f"Fix: rename or remove {sub}, or add {sub.name}/ to the training folder."
            )
        files = image_files(sub, skipped)
        if not files and split == "train":
            raise DataError(
                f"class folder {sub} holds no images ({', '.join(IMAGE_SUFFIXES)}). Fix: add its images, or remove "
                f"the folder (every class needs training images)."
            )
        paths += files
        labels += [index[sub.name]] * len(files)
    return paths, labels
