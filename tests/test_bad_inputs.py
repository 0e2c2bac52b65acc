"""The bad-input table: malformed input at every entry point is one InputError line naming the file or key and
what is wrong, and nothing is written.

Each row builds one bad input in a fresh folder, calls the entry point in-process and checks that the error
is an InputError (the type `experiments` commands turn into `error: <line>` and exit status 2), that its
message is one line matching the row's pattern in full, and that the folder holds exactly what it held before
the call. The last tests run the commands themselves and check the exit status and the single stderr line.
"""

import dataclasses
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable

import dycheck_fixture
import numpy as np
import pytest

from any4d_jax import explore
from any4d_jax.data import iphone
from any4d_jax.errors import InputError
from any4d_jax.generate import images
from any4d_jax.geometry import trajectory as tj
from any4d_jax.io import a4d, ply
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.jobs import run
from configs import synthetic as synthetic_config
from third_party import diffusers_video

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "io"))
from test_a4d import _random_scene, _with_header, _with_payload  # noqa: E402


def snapshot(folder) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), folder) + "/"] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, folder)] = zlib.crc32(open(p, "rb").read())
    return out


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable  # (folder) -> argument of call (the bad input, built inside folder)
    call: Callable  # (argument) -> raises InputError
    match: str  # regex the whole one-line message must match ({d} is the folder, escaped)


# --- config values and workdirs: jobs.run.train_and_evaluate --------------------------------------------


def tiny():
    c = synthetic_config.get_config()
    c.data.num_frames, c.data.width, c.data.height = 4, 32, 24
    return c


def config_with(**changes):
    def make(d):
        c = tiny()
        for key, value in changes.items():
            section, _, leaf = key.rpartition("__")
            node = c
            for part in section.split("__") if section else []:
                node = node[part]
            node[leaf] = value
        return c, os.path.join(d, "run")

    return make


def start(arg):
    config, workdir = arg
    run.train_and_evaluate(config, workdir)


def existing(content):
    """A workdir whose config.json holds `content` (bytes), and a run of the tiny config into it."""

    def make(d):
        os.makedirs(os.path.join(d, "run"))
        with open(os.path.join(d, "run", "config.json"), "wb") as f:
            f.write(content)
        return tiny(), os.path.join(d, "run")

    return make


def another_config(d):
    c = tiny()
    workdir_lib.check_workdir(c, os.path.join(d, "run"), write=True)
    c.data.num_frames = 7
    return c, os.path.join(d, "run")


def under_a_file(d):
    open(os.path.join(d, "a_file"), "w").close()
    return tiny(), os.path.join(d, "a_file", "run")


CONFIG_CASES = [
    Case(
        "sh_degree",
        config_with(model__sh_degree=7),
        start,
        r"--config.model.sh_degree=7: must be an integer in \[0, 3\]",
    ),
    Case(
        "num_steps",
        config_with(train__num_steps=-1),
        start,
        r"--config.train.num_steps=-1: must be an integer >= 0",
    ),
    Case(
        "width",
        config_with(data__width=4),
        start,
        r"--config.data.width=4: must be an integer in \[8, 16384\]",
    ),
    Case(
        "preset",
        config_with(motion__preset="bogus"),
        start,
        r"--config.motion.preset='bogus': must be one of hybrid, generators_only, learnable_only, static",
    ),
    Case(
        "empty generator allocation",  # orbax cannot checkpoint an empty array: said before training
        config_with(motion__num_generator_channels=0),
        start,
        r"--config.motion.num_generator_channels=0: must be an integer >= 1 \(to train without generator "
        r"bases use --config.motion.preset=learnable_only\)",
    ),
    Case(
        "background",
        config_with(render__background=(0.0, 2.0, 0.0)),
        start,
        r"--config.render.background=\(0.0, 2.0, 0.0\): must be three numbers in \[0, 1\]",
    ),
    Case(
        "lr",
        config_with(train__lr__means=-1e-4),
        start,
        r"--config.train.lr.means=-0.0001: must be a finite number >= 0",
    ),
    Case(
        "densify_order",
        config_with(train__densify_from=900, train__densify_until=100),
        start,
        r"--config.train.densify_from=900 is after --config.train.densify_until=100 \(-1 disables density control\)",
    ),
    Case(
        "source",
        config_with(data__source="nope"),
        start,
        r"--config.data.source='nope': must be one of iphone, prompt, synthetic",
    ),
    Case("fps", config_with(eval__fps=0), start, r"--config.eval.fps=0: must be an integer in \[1, 240\]"),
    Case(
        "another_config",
        another_config,
        start,
        r"{d}/run holds a run with another config \(data.num_frames: 4 there, 7 here\); use another --workdir",
    ),
    Case(
        "torn_config_json",
        existing(b'{"data": {"num_fr'),
        start,
        r"{d}/run/config.json: not valid JSON \(Unterminated string .*\)",
    ),
    Case(
        "config_json_list",
        existing(b"[1, 2]"),
        start,
        r"{d}/run/config.json: the run's config is not a JSON object; this workdir cannot be reused",
    ),
    Case(
        "workdir_under_file",
        under_a_file,
        start,
        r"{d}/a_file/run: cannot write there \(Not a directory\); choose another --workdir",
    ),
]


# --- a finished run's folder: export (io/workdir.scene_from_workdir) -------------------------------------


def run_folder(d, cameras: dict | None = None, raw_cameras: bytes | None = None, checkpoint=True):
    """A fake finished run: config.json, train_cameras.npz and (optionally) a checkpoint at step 3."""
    import orbax.checkpoint as ocp

    wd = os.path.join(d, "run")
    c = tiny()
    workdir_lib.check_workdir(c, wd, write=True)
    path = os.path.join(wd, workdir_lib.TRAIN_CAMERAS)
    if raw_cameras is not None:
        open(path, "wb").write(raw_cameras)
    elif cameras is not None:
        np.savez(path, **cameras)
    if checkpoint:
        mgr = ocp.CheckpointManager(os.path.abspath(os.path.join(wd, "checkpoints")))
        mgr.save(3, args=ocp.args.StandardSave({"step": np.int32(3), "active": np.ones(2, bool)}))
        mgr.wait_until_finished()
    return wd


def good_cameras(**changes):
    cams = dict(
        viewmat=np.tile(np.eye(4, dtype=np.float32), (4, 1, 1)),
        K=np.tile(np.eye(3, dtype=np.float32), (4, 1, 1)),
        width=32,
        height=24,
        times=np.arange(4, dtype=np.float32),
        num_frames=4,
    )
    return {**cams, **changes}


def export(arg):
    wd, step = arg if isinstance(arg, tuple) else (arg, None)
    workdir_lib.scene_from_workdir(wd, step)


EXPORT_CASES = [
    Case(
        "no_cameras",
        lambda d: run_folder(d),
        export,
        r"{d}/run/train_cameras.npz is missing: export needs a workdir written by experiments.run .*",
    ),
    Case(
        "torn_cameras",
        lambda d: run_folder(d, raw_cameras=b"PK\x03\x04" + b"\0" * 40),
        export,
        r"{d}/run/train_cameras.npz: training cameras cannot be read \(.*\)",
    ),
    Case(
        "nan_cameras",
        lambda d: run_folder(d, good_cameras(viewmat=np.full((4, 4, 4), np.nan, np.float32))),
        export,
        r"{d}/run/train_cameras.npz: training cameras lack a finite 3-d array 'viewmat'; train the run again",
    ),
    Case(
        "cameras_shapes",
        lambda d: run_folder(d, good_cameras(times=np.zeros(3, np.float32))),
        export,
        r"{d}/run/train_cameras.npz: training camera arrays have inconsistent shapes; train the run again",
    ),
    Case(
        "missing_step",
        lambda d: (run_folder(d, good_cameras()), 99),
        export,
        r"{d}/run/checkpoints: no checkpoint at step 99; the steps there are 3",
    ),
    Case(
        "no_checkpoints",
        lambda d: run_folder(d, good_cameras(), checkpoint=False),
        export,
        r"{d}/run/checkpoints is missing: export needs a workdir written by experiments.run .*",
    ),
]


# --- DyCheck scene folders: data/iphone.load_scene ----------------------------------------------------------


@pytest.fixture(scope="module")
def scene_template(tmp_path_factory):
    return dycheck_fixture.write_scene(str(tmp_path_factory.mktemp("scene") / "apple"))


def scene(edit):
    def make(d):
        root = os.path.join(d, "apple")
        shutil.copytree(SCENE[0], root)
        edit(root)
        return root

    return make


def edit_json(*rel, fn):
    def edit(root):
        p = os.path.join(root, *rel)
        obj = json.load(open(p))
        fn(obj)
        json.dump(obj, open(p, "w"))

    return edit


def write(*rel, content: bytes):
    def edit(root):
        open(os.path.join(root, *rel), "wb").write(content)

    return edit


def png_header(w: int, h: int) -> bytes:
    """A 45-byte PNG whose header declares w x h pixels (no pixel data)."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def load_scene(root):
    iphone.load_scene(root, factor=2)


SCENE: list = []  # the fixture's folder, set by the scene rows' test before they run
SCENE_CASES = [
    Case(
        "frame_names_null",
        scene(edit_json("splits", "train.json", fn=lambda o: o.update(frame_names=None))),
        load_scene,
        r"{d}/apple/splits/train.json: 'frame_names' must be a list of frame names, got null",
    ),
    Case(
        "warp_id",
        scene(edit_json("metadata.json", fn=lambda o: o["0_00002"].update(warp_id="abc"))),
        load_scene,
        r"""{d}/apple/metadata.json: entry '0_00002': 'warp_id' must be a non-negative integer, got "abc\"""",
    ),
    Case(
        "time_id_float",
        scene(edit_json("splits", "val.json", fn=lambda o: o["time_ids"].__setitem__(0, 1.5))),
        load_scene,
        r"{d}/apple/splits/val.json: time_ids\[0\] must be a non-negative integer, got 1.5",
    ),
    Case(
        "focal_string",
        scene(edit_json("camera", "0_00003.json", fn=lambda o: o.update(focal_length="88"))),
        load_scene,
        r"""{d}/apple/camera/0_00003.json: field 'focal_length' is not numeric: "88\"""",
    ),
    Case(
        "torn_metadata",
        scene(write("metadata.json", content=b'{"0_00000": {"warp_id": 0,')),
        load_scene,
        r"{d}/apple/metadata.json: not valid JSON \(Expecting property name enclosed in double quotes at line 1 column 27\)",
    ),
    Case(
        "deep_split",
        scene(write("splits", "val.json", content=b"[" * 100000 + b"]" * 100000)),
        load_scene,
        r"{d}/apple/splits/val.json: JSON nested deeper than 64 levels",
    ),
    Case(
        "png_bomb",
        scene(write("rgb", "2x", "0_00001.png", content=png_header(30000, 30000))),
        load_scene,
        r"{d}/apple/rgb/2x/0_00001.png: image is 30000x30000 \(WxH\) but its camera gives 48x36 at this factor",
    ),
    Case(
        "depth_uint16",
        scene(lambda r: np.save(os.path.join(r, "depth", "2x", "0_00002.npy"), np.ones((36, 48), np.uint16))),
        load_scene,
        r"{d}/apple/depth/2x/0_00002.npy: depth must be a float array \(float16/32/64\), got dtype uint16",
    ),
    Case(
        "no_metadata",
        scene(lambda r: os.remove(os.path.join(r, "metadata.json"))),
        load_scene,
        r"{d}/apple: incomplete DyCheck scene, missing metadata.json",
    ),
]


# --- image prompts, trajectories, model folders, .a4d, PLY, notebook overrides ------------------------------


def file_with(name: str, content: bytes):
    def make(d):
        p = os.path.join(d, name)
        open(p, "wb").write(content)
        return p

    return make


TRAJ = {
    "width": 64,
    "height": 48,
    "fov_deg": 60.0,
    "keyframes": [
        {"position": [0, 0, 0], "look_at": [0, 0, 2]},
        {"position": [0.5, 0, 0], "look_at": [0, 0, 2]},
    ],
}


def traj(**changes):
    return file_with("t.json", json.dumps({**TRAJ, **changes}).encode())


def model_folder(edit):
    def make(d):
        r = os.path.join(d, "m")
        files = {
            "model_index.json": {
                "_class_name": "WanPipeline",
                "vae": ["diffusers", "AutoencoderKLWan"],
                "transformer": ["diffusers", "WanTransformer3DModel"],
            },
            "vae/config.json": {"temperal_downsample": [False, True, True]},
            "transformer/config.json": {
                "num_attention_heads": 2,
                "attention_head_dim": 12,
                "patch_size": [1, 2, 2],
            },
        }
        edit(files)
        for rel, obj in files.items():
            os.makedirs(os.path.dirname(os.path.join(r, rel)), exist_ok=True)
            json.dump(obj, open(os.path.join(r, rel), "w"))
        return r

    return make


def a4d_file(edit):
    def make(d):
        p = os.path.join(d, "scene.a4d")
        open(p, "wb").write(edit(a4d.to_bytes(_random_scene(n=16), "mixed")))
        return p

    return make


def header(fn):
    return a4d_file(lambda b: _with_header(b, fn))


def nan_first_mean(payload):
    struct.pack_into("<f", payload, 0, float("nan"))


def overrides(value):
    return lambda d: value


def load_config(value):
    explore.load_config(os.path.join(ROOT, "configs", "synthetic.py"), value)


FILE_CASES = [
    Case(
        "image_bomb",
        file_with("bomb.png", png_header(30000, 30000)),
        images.load_image,
        r"prompt.image {d}/bomb.png is 30000 x 30000 pixels \(900 Mpx\), more than the 64 Mpx accepted: downscale it first",
    ),
    Case(
        "image_bad_ppm",
        file_with("bad.ppm", b"P6\n16 1x\n255\n" + bytes(48)),
        images.load_image,
        r"prompt.image {d}/bad.ppm: cannot read the image \(.*\)",
    ),
    Case(
        "image_missing",
        lambda d: os.path.join(d, "nope.png"),
        images.load_image,
        r"prompt.image: no such file: {d}/nope.png",
    ),
    Case(
        "traj_deep",
        file_with("t.json", b"[" * 100000 + b"]" * 100000),
        tj.from_json,
        r"{d}/t.json: JSON nested deeper than 64 levels",
    ),
    Case(
        "traj_frames",
        traj(num_frames=10_000_000_000),
        tj.from_json,
        r"trajectory JSON {d}/t.json: 'num_frames' must be an integer in \[1, 10000\], got 10000000000",
    ),
    Case(
        "traj_width",
        traj(width=10**12),
        tj.from_json,
        r"trajectory JSON {d}/t.json: 'width' must be an integer in \[1, 16384\], got 1000000000000",
    ),
    Case(
        "traj_version",
        traj(version=99),
        tj.from_json,
        r"trajectory JSON {d}/t.json: 'version' 99 is not supported \(this reader knows version 1\)",
    ),
    Case(
        "traj_nan",
        file_with("t.json", json.dumps(TRAJ).replace("0.5", "NaN").encode()),
        tj.from_json,
        r"{d}/t.json: NaN is not valid JSON \(write a number or null\)",
    ),
    Case(
        "model_heads",
        model_folder(lambda f: f["transformer/config.json"].pop("num_attention_heads")),
        diffusers_video.inspect,
        r"{d}/m/transformer/config.json: missing key 'num_attention_heads' \(an integer >= 1\)",
    ),
    Case(
        "model_patch",
        model_folder(lambda f: f["transformer/config.json"].update(patch_size=2)),
        diffusers_video.inspect,
        r"{d}/m/transformer/config.json: 'patch_size' must be a list of 3 positive integers, got 2",
    ),
    Case(
        "model_entry",
        model_folder(lambda f: f["model_index.json"].update(vae=[])),
        diffusers_video.inspect,
        r"{d}/m/model_index.json: entry 'vae' must be \[library, class\] .*, got \[\]",
    ),
    Case(
        "model_class",
        model_folder(lambda f: f["model_index.json"].update(_class_name=["WanPipeline"])),
        diffusers_video.inspect,
        r"{d}/m/model_index.json: '_class_name' must be a string naming the pipeline class, got \['WanPipeline'\]",
    ),
    Case(
        "a4d_offset",
        header(lambda h: h["arrays"]["means"].update(offset=-64)),
        a4d.read_a4d,
        r"{d}/scene.a4d: array 'means' has offset -64, expected a non-negative integer",
    ),
    Case(
        "a4d_no_dtype",
        header(lambda h: h["arrays"]["means"].pop("dtype")),
        a4d.read_a4d,
        r"""{d}/scene.a4d: array 'means' must be \{"dtype": \.\.\., "shape": \[\.\.\.\], "offset": \.\.\.\}, got \{'shape': \[16, 3\], 'offset': 0\}""",
    ),
    Case(
        "a4d_arrays_list",
        header(lambda h: h.update(arrays=[1, 2])),
        a4d.read_a4d,
        r"{d}/scene.a4d: header key arrays must be an object, got \[1, 2\]",
    ),
    Case(
        "a4d_no_frames",
        header(lambda h: h.pop("num_frames")),
        a4d.read_a4d,
        r"{d}/scene.a4d: the header lacks num_frames",
    ),
    Case(
        "a4d_nan",
        a4d_file(lambda b: _with_payload(b, nan_first_mean)),
        a4d.read_a4d,
        r"{d}/scene.a4d: array 'means' holds NaN or inf values; re-export the scene",
    ),
    Case(
        "a4d_truncated",
        a4d_file(lambda b: b[:-200]),
        a4d.read_a4d,
        r"{d}/scene.a4d: truncated \(\d+ bytes, the header says \d+\)",
    ),
    Case(
        "ply_not_ply",
        file_with("f.ply", b"obj\n"),
        ply.read_ply,
        r"read_ply: {d}/f.ply is not a PLY file \(first line b'obj\\n'\)",
    ),
    Case(
        "ply_torn",
        file_with("f.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\n"),
        ply.read_ply,
        r"read_ply: {d}/f.ply: header has no end_header line",
    ),
    Case(
        "override_bool",
        overrides({"eval.write_ply": "nope"}),
        load_config,
        r"override 'eval.write_ply': expected true/false \(or yes/no, 1/0\), got 'nope'",
    ),
    Case(
        "override_int",
        overrides({"train.num_steps": 2.9}),
        load_config,
        r"override 'train.num_steps': expected a whole number \(an integer field\), got 2.9",
    ),
    Case(
        "override_key",
        overrides({"train.num_stepz": 3}),
        load_config,
        r"override 'train.num_stepz': the config has no such field .*",
    ),
]

ALL = CONFIG_CASES + EXPORT_CASES + SCENE_CASES + FILE_CASES


def test_the_table_covers_every_entry_point_with_forty_rows():
    assert len(ALL) >= 40
    assert len({c.name for c in ALL}) == len(ALL)


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, scene_template):
    SCENE[:] = [scene_template]
    arg = case.make(str(tmp_path))
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as e:
        case.call(arg)
    message = str(e.value)
    assert "\n" not in message, message
    pattern = case.match.replace("{d}", re.escape(str(tmp_path)))
    assert re.fullmatch(pattern, message), f"\n{message}\n{pattern}"
    assert snapshot(tmp_path) == before


# --- the commands: one stderr line, exit status 2, --debug for the traceback --------------------------------


def command(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["experiments.run", "--config.train.num_stpes=40"],
            r'error: --config.train.num_stpes: no such config key \(did you mean "num_steps"\?\)',
        ),
        (
            ["experiments.run", "--config.train.num_steps=abc"],
            r"error: flag --config.train.num_steps=abc: .*",
        ),
        (
            ["experiments.run", "--config=configs/nope.py"],
            r"error: --config=configs/nope.py: no such config file \(see configs/\)",
        ),
        (
            ["experiments.run", "--config.model.sh_degree=9"],
            r"error: --config.model.sh_degree=9: must be an integer in \[0, 3\]",
        ),
        (
            ["experiments.export", "--workdir=/nonexistent/run"],
            r"error: /nonexistent/run/config.json is missing: .*",
        ),
        (
            ["experiments.ablate", "--config=configs/iphone.py"],
            r"error: experiments.ablate needs data.source='synthetic' \(held-out views\), got 'iphone'",
        ),
    ],
    ids=[
        "unknown_key",
        "bad_type",
        "missing_config",
        "bad_value",
        "export_no_workdir",
        "ablate_not_synthetic",
    ],
)
def test_commands_answer_bad_input_in_one_line_with_status_2(args, line, tmp_path):
    r = command(*args, f"--workdir={tmp_path / 'w'}" if args[0] != "experiments.export" else "--debug=false")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and re.fullmatch(line, lines[0]), r.stderr[-2000:]
    assert not (tmp_path / "w").exists()


def test_debug_shows_the_traceback(tmp_path):
    r = command("experiments.run", "--config.model.sh_degree=9", f"--workdir={tmp_path / 'w'}", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "InputError" in r.stderr
