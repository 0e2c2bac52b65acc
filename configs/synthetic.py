"""Default config: the embedded synthetic scene (no download, runs anywhere)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # PRNG seed of the procedural scene

    c.scene = ml_collections.ConfigDict()
    c.scene.num_gaussians = 20000  # Gaussians in the demo scene

    c.camera = ml_collections.ConfigDict()
    c.camera.num_views = 4  # views along the orbit
    c.camera.radius = 3.2  # orbit radius (world units)
    c.camera.elevation_deg = 20.0  # camera height above the scene's horizon, degrees

    c.render = ml_collections.ConfigDict()
    c.render.width = 256  # image width in pixels
    c.render.height = 192  # image height in pixels
    c.render.fov_deg = 55.0  # horizontal field of view, degrees
    c.render.background = (1.0, 1.0, 1.0)  # RGB behind everything
    c.render.tile_capacity = (
        1024  # most Gaussians composited per 16x16 tile (nearest kept; drops are counted)
    )
    c.render.max_pairs = ml_collections.config_dict.placeholder(int)  # tile-pair budget; None = automatic
    return c
