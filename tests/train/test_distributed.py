"""Across hosts: two JAX processes on 127.0.0.1 train like one process with two devices.

`test_two_processes_train_like_one_process_with_two_devices` starts three Python processes at once: two that
call `parallel.initialize` with a local coordinator (one CPU device each, collectives through gloo) and train
the tiny config of test_parallel.py with parallel.devices=2 in one shared workdir, and one that trains the
same config in a single process with two forced host devices (the reference). Each writes its final
parameters and what it observed (frame loads, where its data was placed) to a file the test compares: the
two processes and the reference agree bit for bit. Every child has a deadline and all are killed when one
fails, so CI never hangs. Cost: ~75 CPU-seconds in all (compiling, in three processes), about 50 s on two
idle cores.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import _FAST_COMPILE

from any4d_jax.io import workdir as workdir_lib
from any4d_jax.train import parallel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEADLINE_S = 480  # far above a normal run (even 150 s on a busy machine); only stops a hung child

# argv: role ("reference", or the process id), coordinator port, workdir, output file. The frames are loaded
# through a counting wrapper; replicate is wrapped to record where the data went and whether its bytes were
# compared across hosts (`multihost_utils.assert_equal`: what jax.device_put does multi-process, a gather).
CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [{root!r}, {here!r}, {tests!r}]
    from any4d_jax.train import parallel  # starts no backend: initialize must come first
    role, port, workdir, out = sys.argv[1:5]
    if role != "reference":
        # every argument given (local device 0 of this process' one): no cluster auto-detection runs
        parallel.initialize(f"127.0.0.1:{{port}}", 2, int(role), [0], timeout_s=60)
    import jax
    import numpy as np
    from jax.experimental import multihost_utils
    from any4d_jax import data
    from any4d_jax.train import loop
    from test_parallel import tiny_config

    seen = {{"loads": 0, "cross_host_checks": 0, "placed": [], "placing": False}}
    real_load, real_replicate, real_check = data.load, parallel.replicate, multihost_utils.assert_equal

    def load(config):
        seen["loads"] += 1
        return real_load(config)

    def check(*a, **k):
        seen["cross_host_checks"] += seen["placing"]
        return real_check(*a, **k)

    def first(tree):  # the data's rgb (T, H, W, 3) or the state's means (N, 3)
        return tree["rgb"] if isinstance(tree, dict) else tree.params.means

    def replicate(tree, mesh):
        seen["placing"] = True
        out = real_replicate(tree, mesh)
        seen["placing"] = False
        host, shards = np.asarray(first(tree)), [np.asarray(s.data) for s in first(out).addressable_shards]
        seen["placed"].append(dict(shape=list(first(out).shape), shards=[list(s.shape) for s in shards],
                                   equal=all(np.array_equal(s, host) for s in shards)))
        return out

    data.load, parallel.replicate, multihost_utils.assert_equal = load, replicate, check
    c = tiny_config()
    c.parallel.devices = 2
    frames = data.load(c).train
    state, _ = loop.train(c, frames, workdir, progress=False)
    leaves = jax.tree_util.tree_leaves_with_path(state.params)
    np.savez(out, step=state.step, **{{jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}})
    seen.update(process=jax.process_index(), processes=jax.process_count(), devices=jax.device_count(),
                local_devices=jax.local_device_count(), frames=list(frames.rgb.shape))
    with open(out + ".json", "w") as f:
        json.dump(seen, f)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    """The parent's environment with `devices` forced host devices and conftest's fast-compile options."""
    flags = [os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={devices}"]
    flags += [f"--{k}={str(v).lower()}" for k, v in _FAST_COMPILE.items()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_"))}
    return {**env, "XLA_FLAGS": " ".join(flags).strip(), "JAX_PLATFORMS": "cpu"}


def _start(role: str, port: int, workdir, out, devices: int) -> subprocess.Popen:
    """A child training as `role`; its stdout and stderr go to `<out>.log` (a file: no pipe to fill)."""
    code = CHILD.format(root=ROOT, here=HERE, tests=os.path.dirname(HERE))
    with open(f"{out}.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", code, role, str(port), str(workdir), str(out)],
            cwd=ROOT,
            env=_env(devices),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _log(p: subprocess.Popen) -> str:
    with open(f"{p.args[-1]}.log") as f:
        return f.read()[-4000:]


def _wait_all(procs: dict[str, subprocess.Popen], deadline_s: float) -> None:
    """Return once every child exited 0. The first to fail (or the deadline) kills the others at once (a
    process whose peer died would wait in a collective) and fails the test with its output."""
    end = time.monotonic() + deadline_s
    try:
        while True:
            codes = {name: p.poll() for name, p in procs.items()}
            failed = [name for name, code in codes.items() if code not in (None, 0)]
            if failed:
                p = procs[failed[0]]
                pytest.fail(f"{failed[0]} exited {p.returncode}:\n{_log(p)}")
            if all(code == 0 for code in codes.values()):
                return
            if time.monotonic() > end:
                pytest.fail(
                    f"not finished within {deadline_s} s: {[n for n, c in codes.items() if c is None]}"
                )
            time.sleep(0.2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _params(path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _seen(path) -> dict:
    with open(str(path) + ".json") as f:
        return json.load(f)


def _restore_on_one_device(mgr, step: int) -> dict:
    """Checkpoint `step` as nested dicts of arrays on this process' one device (a checkpoint written over a
    mesh does not restore without a target: orbax refuses the other topology)."""
    meta = ocp.StandardCheckpointer().metadata(mgr.directory / str(step) / "default").item_metadata.tree
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
    return mgr.restore(step, args=ocp.args.StandardRestore(target))


def test_two_processes_train_like_one_process_with_two_devices(tmp_path):
    port, shared, out = _free_port(), tmp_path / "shared", tmp_path / "out"
    out.mkdir()
    procs = {f"process {i}": _start(str(i), port, shared, out / f"p{i}.npz", devices=1) for i in (0, 1)}
    procs["reference"] = _start("reference", 0, tmp_path / "single", out / "ref.npz", devices=2)
    _wait_all(procs, DEADLINE_S)

    p0, p1, ref = (_params(out / f"{n}.npz") for n in ("p0", "p1", "ref"))
    assert int(p0["step"]) == int(ref["step"]) == 4
    assert p0.keys() == p1.keys() == ref.keys()
    for k in p0:
        # Both processes hold the all-reduced result of one SPMD program: identical, bit for bit.
        np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)
        # Against the single process: exact too (zero tolerance). Each device runs the same per-device
        # program on the same frames, and the gradient all-reduce over two devices is one two-term sum,
        # a + b = b + a in floating point whether gloo adds across processes or XLA within one. (With more
        # devices the order of the terms may differ: compare with a tolerance, as test_parallel.py does.)
        np.testing.assert_array_equal(p0[k], ref[k], err_msg=k)

    for i in (0, 1):
        seen = _seen(out / f"p{i}.npz")
        assert (seen["process"], seen["processes"], seen["devices"], seen["local_devices"]) == (i, 2, 2, 1)
        # The frames were read once by this host, and each placement (state, then data) put that host copy,
        # whole, on this process' one device only, with no cross-host comparison of the bytes.
        assert seen["loads"] == 1 and seen["cross_host_checks"] == 0
        state_placed, data_placed = seen["placed"]
        assert data_placed["shape"] == seen["frames"] and data_placed["shards"] == [seen["frames"]]
        assert data_placed["equal"] and state_placed["equal"] and len(state_placed["shards"]) == 1
    assert len(_seen(out / "ref.npz")["placed"][1]["shards"]) == 2  # the reference: both devices its own

    # The checkpoint the two processes wrote together (orbax, one shared workdir) holds the final state.
    mgr = workdir_lib.checkpoint_manager(str(shared), create=False)
    assert mgr.all_steps() == [4]
    np.testing.assert_array_equal(_restore_on_one_device(mgr, 4)["params"]["sh"], p0[".sh"])


def test_launcher_environments_give_the_distributed_arguments():
    none = dict(coordinator_address=None, num_processes=None, process_id=None, local_device_ids=None)
    assert parallel.distributed_args({}) == none  # left to JAX: SLURM, Open MPI, Kubernetes, Cloud TPU
    slurm = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0"}
    assert parallel.distributed_args(slurm) == none  # JAX's own SLURM detection reads these
    jax_env = {"JAX_COORDINATOR_ADDRESS": "h0:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert list(parallel.distributed_args(jax_env).values()) == ["h0:1234", 4, 3, None]
    torchrun = {"MASTER_ADDR": "h0", "MASTER_PORT": "29500", "WORLD_SIZE": "8", "RANK": "5"}
    torchrun |= {"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}  # four processes per host: one device each
    assert list(parallel.distributed_args(torchrun).values()) == ["h0:29500", 8, 5, [1]]
    k8s = {"JAX_COORDINATOR_ADDRESS": "job-0.svc:1234", "JAX_NUM_PROCESSES": "2", "JOB_COMPLETION_INDEX": "1"}
    assert list(parallel.distributed_args(k8s).values()) == ["job-0.svc:1234", 2, 1, None]
    explicit = parallel.distributed_args(jax_env, "me:1", 2, 0, [0, 1])  # arguments win over the environment
    assert list(explicit.values()) == ["me:1", 2, 0, [0, 1]]
    with pytest.raises(ValueError, match="JAX_PROCESS_ID='x' is not an integer"):
        parallel.distributed_args({"JAX_PROCESS_ID": "x"})


def test_local_copy_of_a_replicated_array_is_its_local_replica():
    mesh = parallel.make_mesh(1)
    x = parallel.replicate({"a": np.arange(6.0, dtype=np.float32)}, mesh)
    y = parallel.local_copy(x)["a"]
    assert len(y.sharding.device_set) == 1 and np.array_equal(np.asarray(y), np.arange(6.0))
    assert jax.process_count() == 1
