"""any4d_jax: prompt + camera trajectory -> video -> persistent 3D Gaussians with a hybrid motion basis.

The JAX core (this package minus `generate/` backends) never imports torch or diffusers.
"""

__version__ = "0.1.0"
