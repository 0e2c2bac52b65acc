"""The prompt job saves the generated frames and cameras first (generated.npz next to trajectory.json), and a
rerun in the same workdir trains on them without generating (issue 14). Weight-free warp generator, the shared
tiny sizes of gen_helpers (5 frames of 32 x 32): two short runs, then refusals that stop before training.
"""

import io
import os
import shutil
import zlib
from contextlib import redirect_stdout

import numpy as np
import pytest
from gen_helpers import NUM_FRAMES, SIZE, image_config

from any4d_jax.errors import InputError
from any4d_jax.generate import warp
from any4d_jax.jobs import prompt as prompt_job


def _config(stop_after):
    c = image_config()
    c.train.num_steps, c.train.checkpoint_every, c.train.stop_after = 2, 1, stop_after
    return c


def _crc(path) -> int:
    return zlib.crc32(open(path, "rb").read())


def _record_training(monkeypatch) -> list:
    """loop.train wrapped: the frames each call trains on, as numpy arrays."""
    seen, train = [], prompt_job.loop.train

    def recording(config, frames, workdir, *args, **kwargs):
        cams = frames.cameras
        seen.append(
            {
                "rgb": np.asarray(frames.rgb),
                "depth": np.asarray(frames.depth),
                "times": np.asarray(frames.times),
                "viewmat": np.asarray(cams.viewmat),
                "K": np.asarray(cams.K),
                "size": (cams.width, cams.height),
            }
        )
        return train(config, frames, workdir, *args, **kwargs)

    monkeypatch.setattr(prompt_job.loop, "train", recording)
    return seen


def _no_generation(*args, **kwargs):
    raise AssertionError("the rerun must not generate")


@pytest.fixture(scope="module")
def rerun(tmp_path_factory):
    """Run 1 generates and stops after one step; run 2 (same workdir, same experiment) must not generate."""
    workdir = str(tmp_path_factory.mktemp("rerun"))
    with pytest.MonkeyPatch.context() as mp:
        seen = _record_training(mp)
        first = prompt_job.run(_config(stop_after=1), workdir)
        npz = os.path.join(workdir, prompt_job.GENERATED)
        crc = _crc(npz)
        mp.setattr(prompt_job.generate, "load", _no_generation)
        mp.setattr(warp.WarpGenerator, "generate", _no_generation)
        out = io.StringIO()
        with redirect_stdout(out):
            second = prompt_job.run(_config(stop_after=-1), workdir)
    return workdir, first, second, seen, crc, out.getvalue()


def test_generated_npz_is_written_first_and_holds_what_training_reads(rerun):
    workdir, first, _, seen, _, _ = rerun
    assert first == {"stopped_at": 1}
    with np.load(os.path.join(workdir, prompt_job.GENERATED), allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    assert saved["rgb"].dtype == np.uint8 and saved["rgb"].shape == (NUM_FRAMES, SIZE, SIZE, 3)
    assert saved["mask"].shape == (NUM_FRAMES, SIZE, SIZE) and saved["size"].tolist() == [SIZE, SIZE]
    trained = seen[0]
    np.testing.assert_array_equal(
        trained["rgb"], saved["rgb"] / np.float32(255.0)
    )  # run 1 trains on them too
    np.testing.assert_array_equal(trained["depth"], saved["depth"])
    np.testing.assert_array_equal(trained["viewmat"], saved["viewmat"])


def test_a_rerun_loads_the_frames_instead_of_generating_and_trains_on_identical_frames(rerun):
    workdir, _, second, seen, crc, out = rerun
    npz = os.path.join(workdir, prompt_job.GENERATED)
    lines = [line for line in out.splitlines() if "generated.npz" in line]
    assert lines == [
        f"{npz}: reusing the {NUM_FRAMES} generated frames and trajectory.json "
        f"(delete {npz} to generate again)"
    ]
    assert len(seen) == 2
    for k in seen[0]:
        np.testing.assert_array_equal(seen[1][k], seen[0][k], err_msg=k)  # bit-identical frames and cameras
    assert _crc(npz) == crc  # not rewritten
    # Training resumed from run 1's checkpoint and finished; the warp scene was rebuilt for held-out scores.
    assert "recon/psnr" in second["summary"] and "heldout/psnr" in second["summary"]
    assert os.path.isfile(os.path.join(workdir, "metrics.json"))
    assert second["paths"]["generated_frames"] == npz


def _refused(workdir, monkeypatch) -> str:
    monkeypatch.setattr(prompt_job.generate, "load", _no_generation)
    monkeypatch.setattr(prompt_job.loop, "train", _no_generation)
    with pytest.raises(InputError) as e:
        prompt_job.run(_config(stop_after=-1), workdir)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_a_damaged_or_mismatched_generated_npz_is_refused_in_one_line(rerun, tmp_path, monkeypatch):
    workdir = str(tmp_path / "copy")
    shutil.copytree(rerun[0], workdir)
    npz = os.path.join(workdir, prompt_job.GENERATED)
    with np.load(npz, allow_pickle=False) as z:
        good = {k: z[k] for k in z.files}
    again = f"; delete {npz} to generate again"

    with open(npz, "wb") as f:
        f.write(b"PK\x03\x04 not a zip")
    msg = _refused(workdir, monkeypatch)
    assert msg.startswith(f"{npz}: not a readable generated.npz (") and msg.endswith(again)

    np.savez(npz, **{**good, "depth": good["depth"][:-1]})  # one frame short
    assert _refused(workdir, monkeypatch) == (
        f"{npz}: 'depth' must be finite floats of shape ({NUM_FRAMES}, {SIZE}, {SIZE}) (rgb is "
        f"({NUM_FRAMES}, {SIZE}, {SIZE}, 3)), got ({NUM_FRAMES - 1}, {SIZE}, {SIZE}) float32{again}"
    )

    moved = good["viewmat"].copy()
    moved[:, 0, 3] += 0.1  # other cameras than trajectory.json's
    np.savez(npz, **{**good, "viewmat": moved})
    assert _refused(workdir, monkeypatch) == (
        f"{npz}: its cameras are not those of {os.path.join(workdir, 'trajectory.json')}{again}"
    )

    np.savez(npz, **{k: v for k, v in good.items() if k != "rgb"})
    assert _refused(workdir, monkeypatch) == f"{npz}: missing array(s) ['rgb']{again}"

    np.savez(npz, **good)
    os.remove(os.path.join(workdir, "trajectory.json"))
    assert _refused(workdir, monkeypatch).endswith(f"trajectory.json: missing next to {npz}{again}")


def test_without_resume_the_saved_frames_are_not_used(rerun):
    c = _config(stop_after=-1)
    c.resume = False
    assert prompt_job.load_generated(c, rerun[0]) is None
    c.resume = True
    assert prompt_job.load_generated(c, rerun[0]).frames.num_frames == NUM_FRAMES
    c.camera.arc_deg = 40.0  # (the workdir itself refuses a changed config; the loader checks on its own too)
    with pytest.raises(InputError, match=r"generated under other cameras than config.camera describes now"):
        prompt_job.load_generated(c, rerun[0])
