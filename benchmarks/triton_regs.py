"""Registers, spills and shared memory of the Pallas compositing kernels, compiled for a GPU on any host.

    pip install triton==3.9.0        # the compiler and its ptxas; no GPU, CUDA driver or jax[cuda] needed
    python -m benchmarks.triton_regs                     # sm_90 (H100/H200), chunk 16 and 32, 4/8/16 warps
    python -m benchmarks.triton_regs --arch 80 --chunks 16

How: a value-and-gradient render of the iPhone job's shapes (300,000 Gaussians at 480 x 360, RGB + depth +
alpha channels; abstract shapes, nothing is computed) is lowered for CUDA with jax.export, which runs
Pallas's Triton lowering on this host; the two Triton modules it builds (forward, backward) are captured as
TTIR text and compiled by the `triton` package to PTX for --arch, then `ptxas -v` reports each kernel's
registers per thread and spill bytes. Spills go to local memory (slow); registers x threads bound how many
programs share an SM (65,536 registers per SM on sm_80/sm_90).

Capturing the modules goes through a private function of jax (`jax._src.pallas.triton`); the jax version
this was written against is 0.10.2. The triton package's dialect must read jax's TTIR: checked with triton
3.9.0 and jax 0.10.2.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def capture_ttir(chunk_size: int, width: int = 480, height: int = 360, n: int = 300_000) -> dict[str, str]:
    """{kernel name: TTIR text} of the forward and backward kernels at these shapes."""
    import jax
    import jax.numpy as jnp
    from jax import export
    from jax._src.pallas.triton import pallas_call_registration as reg

    from any4d_jax.geometry import cameras
    from any4d_jax.render import RenderConfig, Splats, render

    captured: dict[str, str] = {}
    original = reg.lowering.lower_jaxpr_to_triton_module

    def capture(*args, **kwargs):
        result = original(*args, **kwargs)
        text = result.module.operation.get_asm(enable_debug_info=False)
        name = re.search(r"module @(\w+)", text).group(1)
        captured[name] = text
        return result

    reg.lowering.lower_jaxpr_to_triton_module = capture
    try:
        cam = cameras.make_camera(
            jnp.eye(4), cameras.intrinsics(0.9 * width, 0.9 * width, width / 2, height / 2), width, height
        )
        cfg = RenderConfig(backend="pallas", validate=False, chunk_size=chunk_size)
        f32 = jnp.float32
        shapes = Splats(*(jax.ShapeDtypeStruct(s, f32) for s in [(n, 3), (n, 4), (n, 3), (n,), (n, 3)]))
        target = jax.ShapeDtypeStruct((height, width, 3), f32)

        def loss(s, t):
            return jnp.mean((render(s, cam, None, cfg).rgb - t) ** 2)

        export.export(
            jax.jit(jax.value_and_grad(loss)),
            platforms=("cuda",),
            disabled_checks=[export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
        )(shapes, target)
    finally:
        reg.lowering.lower_jaxpr_to_triton_module = original
    return captured


@dataclasses.dataclass
class KernelStats:
    registers: int
    spill_bytes: int
    shared_bytes: int


def compile_stats(ttir: str, arch: int, num_warps: int, num_stages: int, workdir: str) -> KernelStats:
    """Compile TTIR text with the triton package for sm_<arch> and read ptxas -v."""
    import triton
    from triton.backends.compiler import GPUTarget

    path = os.path.join(workdir, f"k{abs(hash(ttir))}.ttir")
    with open(path, "w") as f:
        f.write(ttir)
    opts = {"num_warps": num_warps, "num_stages": num_stages}
    kernel = triton.compile(path, target=GPUTarget("cuda", arch, 32), options=opts)
    ptx = os.path.join(workdir, f"k{abs(hash(ttir))}_{num_warps}.ptx")
    with open(ptx, "w") as f:
        f.write(kernel.asm["ptx"])
    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    # The newest ptxas the wheel carries (it must read the PTX version triton emits).
    candidates = sorted(glob.glob(os.path.join(bindir, "ptxas*")), key=lambda p: ("blackwell" not in p, p))
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    for ptxas in candidates:
        r = subprocess.run(
            [ptxas, "-v", f"--gpu-name={gpu}", ptx, "-o", os.devnull], capture_output=True, text=True
        )
        regs = re.search(r"Used (\d+) registers", r.stderr)
        if regs:
            spill = re.search(r"(\d+) bytes spill stores", r.stderr)
            return KernelStats(
                int(regs.group(1)), int(spill.group(1)) if spill else 0, kernel.metadata.shared
            )
    raise RuntimeError(f"ptxas -v gave no register count: {r.stderr.strip()[:300]}")


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 (80: A100, 90: H100/H200)")
    ap.add_argument("--chunks", default="16,32", help="RenderConfig.chunk_size values")
    ap.add_argument("--warps", default="4,8,16", help="Triton num_warps values")
    args = ap.parse_args(argv)
    try:
        import triton  # noqa: F401
    except ImportError:
        sys.exit(
            "benchmarks.triton_regs needs the triton compiler: pip install triton==3.9.0 (no GPU needed)"
        )
    from any4d_jax.render import composite_pallas

    rows = []
    with tempfile.TemporaryDirectory() as work:
        for chunk in (int(c) for c in args.chunks.split(",")):
            modules = capture_ttir(chunk)
            for name in sorted(modules):
                for warps in (int(w) for w in args.warps.split(",")):
                    s = compile_stats(modules[name], args.arch, warps, composite_pallas.NUM_STAGES, work)
                    rows.append({"kernel": name, "chunk": chunk, "warps": warps, **dataclasses.asdict(s)})
                    print(rows[-1], flush=True)
    print()
    print(
        f"## Pallas compositing kernels compiled for sm_{args.arch} (iPhone shapes: 300k Gaussians, 480x360)"
    )
    print()
    cols = ["kernel", "chunk_size", "num_warps", "registers/thread", "spill bytes/thread", "shared bytes"]
    print("| " + " | ".join([*cols, "programs/SM by registers"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        per_sm = 65536 // (r["registers"] * 32 * r["warps"])
        print(
            f"| {r['kernel']} | {r['chunk']} | {r['warps']} | {r['registers']} | {r['spill_bytes']} | "
            f"{r['shared_bytes']} | {per_sm} |"
        )
    print()
    print(f"in use: chunk_size 16 (RenderConfig default), num_warps {composite_pallas.NUM_WARPS}")
    return rows


if __name__ == "__main__":
    main()
