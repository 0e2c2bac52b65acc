"""The differentiable tile rasterizer: project.py -> bin.py -> composite.py, with reference.py for tests."""

from any4d_jax.render.api import check_inputs, render, within_budget
from any4d_jax.render.types import RenderConfig, RenderOut, Splats

__all__ = ["RenderConfig", "RenderOut", "Splats", "check_inputs", "render", "within_budget"]
