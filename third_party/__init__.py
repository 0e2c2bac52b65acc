"""Adapters around external PyTorch models (diffusers video pipelines, camera adapters, tiny test pipelines).

Only `any4d_jax.generate.diffusers_gen` imports from here, and only when the `diffusers` backend is asked for;
everything here needs the optional gen extra (`pip install -e '.[gen]'`).
"""
