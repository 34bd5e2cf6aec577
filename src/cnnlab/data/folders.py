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


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder` (recursively, hidden files and folders skipped), sorted by path."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def labelled_files(folder: Path, classes: list[str], split: str) -> tuple[list[Path], list[int]]:
    """(paths, labels) of every image in the class folders of `folder`; a class folder not among `classes` (the
    training pool's) and an empty training class are refused."""
    paths: list[Path] = []
    labels: list[int] = []
    index = {name: i for i, name in enumerate(classes)}
    for sub in subfolders(folder):
        if sub.name not in index:
            raise DataError(
                f"{split} folder {folder} has a class folder '{sub.name}' that the training images "
                f"({len(classes)} classes: {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}) lack. "
                f"Fix: rename or remove {sub}, or add {sub.name}/ to the training folder."
            )
        files = image_files(sub)
        if not files and split == "train":
            raise DataError(
                f"class folder {sub} holds no images ({', '.join(IMAGE_SUFFIXES)}). Fix: add its images, or remove "
                f"the folder (every class needs training images)."
            )
        paths += files
        labels += [index[sub.name]] * len(files)
    return paths, labels
