"""explore.load_config: notebook overrides are parsed strictly (the notebook runs in test_notebook.py)."""

import json
import os

import pytest

from any4d_jax import explore
from any4d_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTHETIC = os.path.join(ROOT, "configs", "synthetic.py")
IMAGE_TO_4D = os.path.join(ROOT, "configs", "image_to_4d.py")


def _refused(overrides, path=SYNTHETIC) -> str:
    with pytest.raises(InputError) as e:
        explore.load_config(path, overrides)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_overrides_are_converted_to_the_field_type():
    c = explore.load_config(
        SYNTHETIC,
        {
            "eval.write_ply": "false",
            "resume": "No",
            "parallel.distributed": "TRUE",
            "train.num_steps": 2.0,
            "train.log_every": "30",
            "train.lr.means": "1e-4",
            "data.fov_deg": 60,
            "motion.preset": "static",
            "data.eval_azimuths_deg": [10],
            "render.max_pairs": "4096",
        },
    )
    assert c.eval.write_ply is False and c.resume is False and c.parallel.distributed is True
    assert c.train.num_steps == 2 and type(c.train.num_steps) is int
    assert c.train.log_every == 30 and type(c.train.log_every) is int
    assert c.train.lr.means == 1e-4 and c.data.fov_deg == 60.0 and type(c.data.fov_deg) is float
    assert c.motion.preset == "static"
    assert c.data.eval_azimuths_deg == (10.0,) and type(c.data.eval_azimuths_deg[0]) is float
    assert c.render.max_pairs == 4096
    for spelling, value in [("yes", True), ("0", False), ("1", True), (False, False), (True, True)]:
        assert explore.load_config(SYNTHETIC, {"resume": spelling}).resume is value
    # JSON text works the same, and a placeholder field can be set and reset.
    c = explore.load_config(IMAGE_TO_4D, json.dumps({"camera.target": [0, 0, 2], "generator.warp.depth": 3}))
    assert c.camera.target == (0.0, 0.0, 2.0) and c.generator.warp.depth == 3.0
    assert explore.load_config(IMAGE_TO_4D, {"camera.target": None}).camera.target is None


def test_bad_overrides_are_one_line_naming_the_key():
    assert "'eval.write_ply'" in _refused({"eval.write_ply": "nope"})
    assert "true/false" in _refused({"resume": "off"})
    assert "'resume'" in _refused({"resume": 2})
    msg = _refused({"train.num_steps": 2.9})
    assert "'train.num_steps'" in msg and "whole number" in msg
    assert "'train.num_steps'" in _refused({"train.num_steps": "2.9"})
    assert "'train.num_steps'" in _refused({"train.num_steps": "ten"})
    assert "'train.num_steps'" in _refused({"train.num_steps": True})
    assert "'train.num_steps'" in _refused({"train.num_steps": "1_000"})
    assert "'train.lr.means'" in _refused({"train.lr.means": "fast"})
    assert "'train.lr.means'" in _refused({"train.lr.means": "nan"})
    assert "'motion.preset'" in _refused({"motion.preset": 3})
    assert "'data.eval_azimuths_deg'" in _refused({"data.eval_azimuths_deg": 10})
    assert "'data.eval_azimuths_deg[1]'" in _refused({"data.eval_azimuths_deg": [1, "x"]})
    msg = _refused({"train.num_stepz": 3})
    assert "'train.num_stepz'" in msg and "no such field" in msg
    assert "'trian.num_steps'" in _refused({"trian.num_steps": 3})
    assert "'train'" in _refused({"train": 3})  # a group of fields, not a value
    assert "'eval.fps.x'" in _refused({"eval.fps.x": 3})
    assert "overrides" in _refused("{ not json")
    assert "overrides" in _refused("[1, 2]")
    assert "config file" in _refused({}, path=os.path.join(ROOT, "configs", "no_such.py"))
