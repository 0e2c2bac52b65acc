"""A refused run changes no byte of the workdir, and is refused before any data is built or generated.

For each job (synthetic, DyCheck iPhone, prompt -> 4D): an existing run's folder is hashed file by file, then
runs that must be refused (another config, a bad config value, bad input files, an unwritable folder) are
started through `jobs.run.train_and_evaluate`, with data loading and generation replaced by a tripwire for
the refusals that must come before them.
"""

import hashlib
import os
import shutil
import subprocess
import uuid

import dycheck_fixture
import gen_helpers
import pytest

from any4d_jax import data, generate
from any4d_jax.errors import InputError
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.jobs import run
from configs import iphone as iphone_config
from configs import synthetic as synthetic_config


def snapshot(folder) -> dict:
    """{relative path: sha256} of every file and folder under `folder`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), folder) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    return dycheck_fixture.write_scene(str(tmp_path_factory.mktemp("scene") / "apple"))


def synthetic():
    c = synthetic_config.get_config()
    c.data.num_frames, c.data.width, c.data.height = 4, 32, 24
    return c


def iphone(root):
    c = iphone_config.get_config()
    c.data.root = root
    return c


def prompt():
    return gen_helpers.image_config()


def existing_run(folder, config) -> dict:
    """A folder as a finished run of `config` leaves it (config.json plus outputs), and its snapshot."""
    workdir_lib.check_workdir(config, str(folder), write=True)
    for name in ("train_cameras.npz", "trajectory.json", "generated.mp4", "metrics.json"):
        (folder / name).write_bytes(os.urandom(64))
    (folder / "checkpoints" / "8").mkdir(parents=True)
    (folder / "checkpoints" / "8" / "data").write_bytes(os.urandom(64))
    return snapshot(folder)


@pytest.fixture
def tripwire(monkeypatch):
    """Data loading and generation fail the test if reached."""

    def boom(*a, **k):
        raise AssertionError("data was built before the run was refused")

    monkeypatch.setattr(data, "load", boom)
    monkeypatch.setattr(generate, "load", boom)


JOBS = {"synthetic": lambda root: synthetic(), "iphone": iphone, "prompt": lambda root: prompt()}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_another_config_is_refused_before_anything_and_writes_nothing(job, scene_root, tmp_path, tripwire):
    work = tmp_path / "run"
    before = existing_run(work, JOBS[job](scene_root))
    other = JOBS[job](scene_root)
    other.seed = 7
    with pytest.raises(InputError) as e:
        run.train_and_evaluate(other, str(work))
    assert (
        str(e.value)
        == f"{work} holds a run with another config (seed: 0 there, 7 here); use another --workdir"
    )
    assert snapshot(work) == before


@pytest.mark.parametrize(
    "job, change, match",
    [
        (
            "synthetic",
            lambda c: setattr(c.model, "sh_degree", 7),
            r"--config.model.sh_degree=7: must be an integer in \[0, 3\]",
        ),
        (
            "synthetic",
            lambda c: setattr(c.train, "num_steps", -1),
            r"--config.train.num_steps=-1: must be an integer >= 0",
        ),
        (
            "iphone",
            lambda c: setattr(c.render, "background", (0.0, 2.0, 0.0)),
            r"render.background=.*three numbers in \[0, 1\]",
        ),
        (
            "synthetic",
            lambda c: setattr(c.render, "backend", "triton"),
            r"--config.render.backend='triton': must be one of auto, xla, pallas",
        ),
        (
            "prompt",
            lambda c: setattr(c.camera, "num_frames", 0),
            r"--config.camera.num_frames=0: must be an integer in \[1, 10000\]",
        ),
    ],
)
def test_a_bad_config_value_is_refused_first(job, change, match, scene_root, tmp_path, tripwire):
    work = tmp_path / "run"
    before = existing_run(work, JOBS[job](scene_root))
    c = JOBS[job](scene_root)
    change(c)
    with pytest.raises(InputError, match=match):
        run.train_and_evaluate(c, str(work))
    assert snapshot(work) == before


def test_a_broken_scene_is_refused_before_training_and_writes_nothing(scene_root, tmp_path):
    root = str(tmp_path / "apple")
    shutil.copytree(scene_root, root)
    with open(os.path.join(root, "splits", "train.json"), "w") as f:
        f.write('{"frame_names": null, "time_ids": [], "camera_ids": []}')
    work = tmp_path / "run"
    before = existing_run(work, iphone(root))
    with pytest.raises(InputError, match=r"splits/train.json: 'frame_names' must be a list"):
        run.train_and_evaluate(iphone(root), str(work))
    assert snapshot(work) == before


def test_a_missing_image_prompt_is_refused_before_generation_and_writes_nothing(tmp_path):
    c = prompt()
    c.prompt.image = str(tmp_path / "missing.png")
    work = tmp_path / "run"
    before = existing_run(work, c)
    with pytest.raises(InputError, match=r"missing.png"):
        run.train_and_evaluate(c, str(work))
    assert snapshot(work) == before


def test_a_new_workdir_refused_for_bad_input_is_not_left_behind(scene_root, tmp_path):
    root = str(tmp_path / "apple")
    shutil.copytree(scene_root, root)
    os.remove(os.path.join(root, "metadata.json"))
    work = tmp_path / "new"
    with pytest.raises(InputError, match="metadata.json"):
        run.train_and_evaluate(iphone(root), str(work))
    assert not work.exists()


@pytest.mark.parametrize("job", sorted(JOBS))
def test_an_unwritable_workdir_is_refused_before_anything(job, scene_root, tmp_path, tripwire):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match=r"a_file/run: cannot write there \(Not a directory\)"):
        run.train_and_evaluate(JOBS[job](scene_root), str(tmp_path / "a_file" / "run"))
    ro = tmp_path / f"ro{uuid.uuid4().hex[:6]}"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root); the Not-a-directory case ran")
    try:
        with pytest.raises(InputError, match=r"cannot write there \(Read-only file system\)"):
            run.train_and_evaluate(JOBS[job](scene_root), str(ro / "run"))
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
