"""docs/notebook.md runs as written: its Python blocks execute in order and agree with the records."""

import json
import re
from pathlib import Path

import pytest

from conftest import REPO


def test_the_notebook_walkthrough_runs_and_matches_the_records(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "notebook.md").read_text(), flags=re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/notebook.md", "exec"), namespace)
    record = json.loads((tmp_path / "outputs/notebook/seed0/metrics.json").read_text())
    assert namespace["record"] == record and record["status"] == "completed"
    # predictions of the loaded best checkpoint reproduce the test accuracy the run recorded
    recomputed = float((namespace["predicted"] == namespace["labels"]).float().mean())
    assert recomputed == pytest.approx(record["test_acc"], abs=1e-6)
    assert [row["seed"] for row in namespace["table"]] == ["0", "1"]
    assert namespace["table"][0]["test_acc"] == pytest.approx(record["test_acc"])
    out = capsys.readouterr().out
    assert "completed test accuracy" in out and "recomputed test accuracy" in out


def test_bad_input_raises_with_the_one_line_message(tmp_path):
    import cnnlab
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="model.dropout=1.5 is out of range"):
        cnnlab.train(["data=tiny", "model.dropout=1.5"], run_dir=Path(tmp_path) / "bad")
    assert not (tmp_path / "bad").exists()


def test_a_refused_train_leaves_no_dated_folders_behind(tmp_path, monkeypatch):
    import cnnlab
    from cnnlab.errors import CnnlabError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CnnlabError, match="model.dropout=1.5 is out of range"):
        cnnlab.train(["data=tiny", "model.dropout=1.5"])  # the default run dir: outputs/runs/<date>/<time>
    assert list(tmp_path.iterdir()) == []


def test_train_honours_hydra_run_dir_as_the_command_line_does(tmp_path, monkeypatch):
    import cnnlab

    monkeypatch.chdir(tmp_path)
    overrides = ["data=tiny", "model.width=8", "data.train_count=300", "trainer.max_epochs=1", "lab_images=false"]
    record = cnnlab.train([*overrides, f"hydra.run.dir={tmp_path}/mine"])
    assert record["status"] == "completed" and (tmp_path / "mine" / "metrics.json").is_file()
    assert not (tmp_path / "outputs").exists()


def test_train_refuses_a_run_dir_that_is_a_file_in_one_line(tmp_path):
    import cnnlab
    from cnnlab.errors import CnnlabError

    (tmp_path / "a_file").write_text("mine")
    for run_dir in (tmp_path / "a_file", tmp_path / "a_file" / "sub"):
        with pytest.raises(CnnlabError, match="^run_dir .* (is a file, not a directory|cannot be written)"):
            cnnlab.train(["data=tiny"], run_dir=run_dir)
    assert (tmp_path / "a_file").read_text() == "mine"


def test_load_sweep_and_load_run_refuse_a_path_that_does_not_exist(tmp_path):
    import cnnlab
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match=f"{tmp_path}/nowhere is not a directory. Fix: pass a sweep directory"):
        cnnlab.load_sweep(tmp_path / "nowhere")
    with pytest.raises(CnnlabError, match=f"{tmp_path}/nowhere holds no run"):
        cnnlab.load_run(tmp_path / "nowhere")


def test_train_refuses_one_string_of_overrides_and_load_sweep_a_folder_without_runs(tmp_path):
    # a string was split into one override per letter; an empty folder gave [] where cnnlab-compare refuses it
    import cnnlab
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match=re.escape("Fix: cnnlab.train(['data=tiny', 'model.width=8'])")):
        cnnlab.train("data=tiny model.width=8", run_dir=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CnnlabError, match=f"no run directories .* under {tmp_path}"):
        cnnlab.load_sweep(tmp_path)
