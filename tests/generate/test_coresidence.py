"""A torch generator and JAX reconstruction in one process (issue 14), checked on CPU.

- JAX's GPU allocator is configured before JAX's first use when a CUDA generator is asked for
  (jobs/accelerator.py, called first in experiments/run.py main): checked in fresh interpreters.
- "cuda" / "cuda:K" resolve to the GPU JAX trains on (generate/diffusers_gen.py resolve_devices), with fakes.
- A CUDA request on a machine without CUDA is refused before anything loads; bad device strings too.
- A video on a device JAX has no backend for crosses on the host (generate/dlpack.py): a fake CUDA tensor.
- The pipeline and the camera adapter are freed once the frames are out (tiny real pipeline, weakrefs).
"""

import json
import os
import subprocess
import sys
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gen_helpers import NUM_FRAMES, SIZE, image_config, text_config

from any4d_jax.errors import InputError
from any4d_jax.generate import base, dlpack
from any4d_jax.jobs import accelerator, checks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XLA_VARS = accelerator.USER_ALLOCATOR_VARS


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _gpu_config(device="cuda", fraction=None):
    c = text_config()
    c.generator.device, c.generator.jax_memory_fraction = device, fraction
    return c


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in XLA_VARS}
    return {**env, **extra}


# ----------------------------------------------------------------------------------------------------------
# 1. JAX's allocator, before JAX's first use.
# ----------------------------------------------------------------------------------------------------------


def test_allocator_env_is_set_only_for_a_cuda_generator_and_never_over_the_users_variables():
    env = accelerator.allocator_env
    assert env(_gpu_config("cuda"), {}) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert env(_gpu_config("cuda:1"), {}) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert env(_gpu_config("cuda", 0.4), {}) == {"XLA_CLIENT_MEM_FRACTION": "0.4"}
    assert env(_gpu_config("cpu"), {}) == {}
    # auto is cuda wherever torch sees a GPU (and a CPU-only machine ignores the variable)
    assert env(_gpu_config("auto"), {}) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert env(image_config(), {}) == {}  # warp generator: nothing shares the GPU
    for user in XLA_VARS:  # the user manages the allocator: none is touched (jaxlib refuses two fractions)
        assert env(_gpu_config("cuda", 0.4), {user: "0.9"}) == {}
    with pytest.raises(InputError) as e:
        env(_gpu_config("cuda", 1.5), {})
    assert "--config.generator.jax_memory_fraction=1.5" in _one_line(e)


def test_configuring_after_jax_started_changes_nothing_and_warns_once(capsys):
    jnp.zeros(1).block_until_ready()  # this test process: JAX's backends exist
    assert accelerator.jax_backends_initialized()
    environ = {}
    assert accelerator.configure_jax_memory(_gpu_config("cuda:0"), environ) == {} and environ == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: JAX is already initialised, so XLA_PYTHON_CLIENT")


_FRESH = """
import json, os, sys
from any4d_jax.jobs import accelerator
from configs import text_to_4d
c = text_to_4d.get_config()
c.generator.device = sys.argv[1]
c.generator.jax_memory_fraction = None if sys.argv[2] == "none" else float(sys.argv[2])
if sys.argv[3] == "late":
    import jax.numpy as jnp
    jnp.zeros(1).block_until_ready()  # JAX's backends exist before the call
assert "jax" not in sys.modules or sys.argv[3] == "late"  # the call path imports no JAX
set_ = accelerator.configure_jax_memory(c)
from jax._src import xla_bridge
out = {k: os.environ.get(k) for k in accelerator.USER_ALLOCATOR_VARS}
print(json.dumps({"set": set_, "env": out, "initialised": xla_bridge.backends_are_initialized()}))
"""


def _fresh(device, fraction, when="early", **env):
    r = subprocess.run(
        [sys.executable, "-c", _FRESH, device, fraction, when],
        cwd=ROOT,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_allocator_is_configured_in_a_fresh_interpreter_before_jax_initialises():
    out, err = _fresh("cuda", "none")
    assert out["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and not out["initialised"]
    assert out["set"] == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} and err == ""
    out, _ = _fresh("cuda:1", "0.35")
    assert (
        out["env"]["XLA_CLIENT_MEM_FRACTION"] == "0.35"
        and out["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] is None
    )
    assert not out["initialised"]
    out, _ = _fresh("cuda", "none", XLA_PYTHON_CLIENT_PREALLOCATE="true")  # the user's choice stays
    assert out["set"] == {} and out["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    out, err = _fresh("cuda", "none", when="late")  # too late: nothing set, one warning line
    assert out["set"] == {} and out["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] is None and out["initialised"]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: JAX is already initialised"), err


_NO_MODEL = (
    "generator 'diffusers' needs a local pipeline folder: --config.generator.model=/path/to/pipeline "
    "(weights are never downloaded)"
)


def test_main_configures_the_allocator_before_jax_initialises(tmp_path):
    """experiments.run with a CUDA generator: the variable is set (and said) before JAX starts (no warning);
    the run then stops at the missing model folder, as it would on any machine."""
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        "--config=configs/text_to_4d.py",
        "--config.generator.device=cuda",
        f"--workdir={tmp_path / 'run'}",
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "XLA_PYTHON_CLIENT_PREALLOCATE=false (generator.device=cuda shares the GPU with JAX)" in r.stdout
    err = r.stderr.strip().splitlines()  # one line: no "already initialised" warning before it
    assert err == ["error: " + _NO_MODEL], r.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------------
# 3. torch and JAX on one GPU (fakes: no GPU here).
# ----------------------------------------------------------------------------------------------------------


class FakeGpu:
    def __init__(self, i):
        self.local_hardware_id = i

    def __repr__(self):
        return f"FakeGpu({self.local_hardware_id})"


def test_cuda_resolves_to_the_gpu_jax_trains_on():
    from any4d_jax.generate.diffusers_gen import resolve_devices

    g0, g1, g2 = FakeGpu(0), FakeGpu(1), FakeGpu(2)
    assert resolve_devices("cpu", [g0, g1]) == ("cpu", None)
    assert resolve_devices("cuda", []) == ("cuda", None)  # CPU jax: frames cross on the host
    assert resolve_devices("cuda:1", []) == ("cuda:1", None)
    assert resolve_devices("cuda", [g0, g1]) == ("cuda:0", g0)  # JAX's default GPU
    assert resolve_devices("cuda", [g0, g1], default=g1) == ("cuda:1", g1)  # jax_default_device = gpu 1
    assert resolve_devices("cuda", [g1, g2]) == ("cuda:1", g1)  # ids are CUDA ordinals, not list positions
    assert resolve_devices("cuda:1", [g0, g1]) == ("cuda:1", g1)  # training moves to JAX's GPU 1
    with pytest.raises(InputError) as e:
        resolve_devices("cuda:2", [g0, g1])
    assert "JAX has no GPU 2 (it sees cuda:0, cuda:1)" in _one_line(e)
    with pytest.raises(InputError):
        resolve_devices("gpu:0", [g0])


def test_the_prompt_job_asks_the_backend_for_its_jax_device(monkeypatch):
    from any4d_jax.generate import diffusers_gen

    assert base.jax_device(image_config()) is None  # warp: no device of its own
    assert base.jax_device(_gpu_config("cuda:1")) is None  # CPU jax here: JAX's own default
    gpus = [FakeGpu(0), FakeGpu(1)]
    monkeypatch.setattr(diffusers_gen, "jax_gpus", lambda: gpus)
    assert base.jax_device(_gpu_config("cuda:1")) is gpus[1]
    assert base.jax_device(_gpu_config("cuda")) is gpus[0]
    assert base.jax_device(_gpu_config("cpu")) is None


# ----------------------------------------------------------------------------------------------------------
# 5. A GPU request without CUDA, or a bad device string: refused before anything loads.
# ----------------------------------------------------------------------------------------------------------


def test_bad_device_strings_are_refused_by_the_config_check():
    ok, want = checks.RULES["generator.device"]
    assert (
        want
        == "auto, cpu, cuda or cuda:K (K = a CUDA GPU index, e.g. cuda:1; auto = cuda when torch sees a GPU)"
    )
    for bad in ("gpu", "cuda:", "cuda:-1", "cuda:0,1", "mps", "CUDA", " cpu", None):
        assert not ok(bad), bad
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:7"):
        assert ok(good), good
    ok, _ = checks.RULES["generator.jax_memory_fraction"]
    assert ok(None) and ok(0.5) and ok(1.0) and ok(1)
    assert not ok(0.0) and not ok(1.5) and not ok(float("nan")) and not ok(True)
    c = image_config()
    c.generator.device = "gpu"
    with pytest.raises(InputError) as e:
        checks.check_config(c)
    assert _one_line(e) == f"--config.generator.device='gpu': must be {want}"


def test_a_cuda_request_without_cuda_is_refused_before_anything_loads(tmp_path, monkeypatch):
    for mod in ("torch", "diffusers", "transformers", "ftfy"):
        pytest.importorskip(mod, reason=f"needs the gen extra ({mod})")
    import torch

    from any4d_jax.generate import make_generator
    from third_party import diffusers_video

    def no_loading(*a, **k):
        raise AssertionError("nothing may be inspected or loaded for a refused device")

    monkeypatch.setattr(diffusers_video, "inspect", no_loading)
    monkeypatch.setattr(diffusers_video, "load", no_loading)
    c = _gpu_config("cuda")
    c.generator.model = str(tmp_path)  # never looked at
    assert not torch.cuda.is_available()  # this machine
    with pytest.raises(InputError) as e:
        make_generator(c)
    assert _one_line(e).startswith("--config.generator.device=cuda: torch sees no CUDA GPU")
    monkeypatch.setattr(diffusers_video, "cuda_status", lambda: (True, 2))  # a 2-GPU machine
    c.generator.device = "cuda:2"
    with pytest.raises(InputError) as e:
        make_generator(c)
    assert _one_line(e) == (
        "--config.generator.device=cuda:2: torch sees 2 CUDA GPU(s) (cuda:0 to cuda:1); pick one of them"
    )
    c.generator.device = "cuda:x"
    with pytest.raises(InputError, match=r"must be auto, cpu, cuda or cuda:K"):
        make_generator(c)
    diffusers_video.check_cuda("cpu", False, 0)  # the CPU needs nothing
    diffusers_video.check_cuda("cuda:1", True, 2)


# ----------------------------------------------------------------------------------------------------------
# 4. Frames from a device JAX has no backend for cross on the host.
# ----------------------------------------------------------------------------------------------------------


def test_a_cuda_video_crosses_on_the_host_when_jax_has_no_gpu(monkeypatch):
    torch = pytest.importorskip("torch", reason="needs the gen extra (torch)")

    class FakeCudaTensor(torch.Tensor):
        """Reports CUDA device 0 like a tensor a CUDA pipeline returns; only .cpu() gives host memory."""

        host_copies = 0

        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA, device 0

        def __dlpack__(self, *args, **kwargs):
            raise BufferError("fake CUDA memory: not readable by a CPU consumer")

        def cpu(self, *args, **kwargs):
            type(self).host_copies += 1
            return self.as_subclass(torch.Tensor).clone()

    video = torch.rand(NUM_FRAMES, 3, 8, 12)
    fake = video.clone().as_subclass(FakeCudaTensor)
    with pytest.raises(RuntimeError, match="Unknown backend cuda"):  # what the job died of before
        jnp.from_dlpack(fake)
    assert dlpack.needs_host_copy(fake) and not dlpack.needs_host_copy(video)
    hwc = dlpack.video_to_jax(fake[None])
    assert FakeCudaTensor.host_copies == 1  # the host path was taken
    np.testing.assert_array_equal(np.asarray(hwc), video.permute(0, 2, 3, 1).numpy())
    # With CUDA jax holding that GPU the buffer would be imported directly (no host copy).
    gpus = [FakeGpu(0), FakeGpu(1)]
    monkeypatch.setattr(jax, "local_devices", lambda backend=None: gpus if backend == "cuda" else [])
    assert dlpack.jax_can_import(2, 1) and not dlpack.jax_can_import(2, 2)
    assert dlpack.jax_can_import(1, 0) and not dlpack.jax_can_import(10, 0)  # CPU always; ROCm not here


# ----------------------------------------------------------------------------------------------------------
# 2. The pipeline is freed once the frames are out.
# ----------------------------------------------------------------------------------------------------------


def test_free_memory_empties_the_cuda_cache_only_for_cuda(monkeypatch):
    torch = pytest.importorskip("torch", reason="needs the gen extra (torch)")
    from third_party import diffusers_video

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty"))
    diffusers_video.free_memory("cpu")
    assert calls == []
    diffusers_video.free_memory("cuda:1")
    assert calls == ["empty"]


def test_the_pipeline_and_adapter_are_freed_after_generation(tmp_path, monkeypatch):
    for mod in ("torch", "diffusers", "transformers", "ftfy"):
        pytest.importorskip(mod, reason=f"needs the gen extra ({mod})")
    from any4d_jax.generate import make_generator, prompt_from_config, trajectory_from_config
    from third_party import camera_adapter, diffusers_video, tiny_fun_camera, tiny_pipelines

    c = image_config()
    c.generator.name, c.prompt.image = "diffusers", os.path.join(ROOT, "docs", "prompt_example.png")
    c.generator.model = tiny_pipelines.build("i2v", str(tmp_path / "i2v"))
    c.generator.camera_model = tiny_fun_camera.write(str(tmp_path / "fun_camera"))  # transformer + adapter
    gen = make_generator(c)
    assert gen.conditioning == "pluecker" and gen.device == "cpu"
    adapters, freed = [], []  # weak references to the Fun transformers (each carries its camera adapter)
    load = camera_adapter.load_transformers

    def spy(*args, **kw):
        out = load(*args, **kw)
        adapters.append(weakref.ref(out["transformer"].camera_adapter))
        return out

    monkeypatch.setattr(camera_adapter, "load_transformers", spy)
    free = diffusers_video.free_memory
    monkeypatch.setattr(diffusers_video, "free_memory", lambda device: freed.append(device) or free(device))
    pipe = gen.pipeline()
    pipe_ref, transformer_ref = weakref.ref(pipe), weakref.ref(pipe.transformer)
    del pipe
    prompt, traj = prompt_from_config(c), trajectory_from_config(c)
    frames = gen.generate(prompt, traj, jax.random.PRNGKey(0))
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3) and bool(jnp.all(jnp.isfinite(frames.rgb)))
    assert freed == ["cpu"] and len(adapters) == 1  # loaded once (gen.pipeline() above)
    assert pipe_ref() is None and transformer_ref() is None  # the torch weights are gone
    assert adapters[0]() is None
    # A second clip loads the pipeline again (and frees it again).
    again = gen.generate(prompt, traj, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(again.rgb), np.asarray(frames.rgb))
    assert gen._pipe is None and freed == ["cpu", "cpu"]
