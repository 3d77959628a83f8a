"""Refusals are one whole line: the closest stage, full reasons (never cut), files named with their folder."""

from __future__ import annotations

import pytest
import torch

from tagseg.cli import main
from tagseg.data.readers.common import load_nifti
from tagseg.data.scans import ScanInput, find_inputs, read_scan
from tagseg.errors import CheckpointError, DataError
from tagseg.io.checkpoints import load_checkpoint
from tagseg.runtime.task import closest, composition_error, one_line
from tagseg.stages.predict import _one_line


def test_a_mistyped_stage_names_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["trian"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err == "tagseg: error: unknown stage 'trian' (did you mean train?); `tagseg --help` lists the stages\n"
    assert closest("zzz", ["train", "predict"]) == ""


def test_hydra_composition_errors_become_one_config_error():
    from hydra.errors import MissingConfigException

    exc = MissingConfigException(
        "In 'train': Could not find 'model/resnetvea'", "model/resnetvea", ["nnunet", "resnetvae"]
    )
    assert str(composition_error(exc)) == (
        "model=resnetvea: no such choice in group 'model' (did you mean resnetvae?); choices: nnunet, resnetvae"
    )
    assert composition_error(ValueError("a bug")) is None


def test_an_unrecognised_predict_input_keeps_its_whole_reason(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan")
    (found,) = find_inputs(notes)
    assert found.kind == "unsupported" and "\n" not in found.reason
    assert found.reason.startswith("unrecognised input; expected a slice store (.h5 with /images and /meta), an HDF5")
    assert found.reason.endswith("multi-frame file), or a folder holding any of these")
    multi = DataError(f"{notes}: unrecognised input; expected a slice store,\n  a NIfTI image,\n  or a folder")
    assert _one_line(multi, notes) == "unrecognised input; expected a slice store, a NIfTI image, or a folder"
    assert one_line("a\n  b\tc ") == "a b c"


def test_a_text_file_as_checkpoint_is_refused_with_torchs_first_sentence(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello world\n" * 10)  # torch's unpickler raises KeyError on it
    with pytest.raises(CheckpointError, match=r"notes\.ckpt: not a readable PyTorch checkpoint \(KeyError: "):
        load_checkpoint(text)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {}}, good)
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "cut.ckpt")
    message = str(err.value)
    # the first sentence of torch's message, whole; its advice after it is left out, not cut mid-phrase
    assert "failed finding central directory; truncated or not written by torch.save?)" in message
    assert "internal miniz error" not in message


def test_an_unreadable_nifti_is_named_with_its_folder(tmp_path, monkeypatch):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "broken.nii.gz").write_bytes(b"not gzip")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        load_nifti("scans/broken.nii.gz")
    assert str(err.value).startswith(f"{tmp_path / 'scans' / 'broken.nii.gz'}: unreadable NIfTI")
    with pytest.raises(DataError) as err:
        read_scan(ScanInput("broken", "nifti", tmp_path.joinpath("scans", "broken.nii.gz").relative_to(tmp_path)))
    assert str(err.value).startswith(f"{tmp_path / 'scans' / 'broken.nii.gz'}: unreadable NIfTI")
