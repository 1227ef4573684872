"""Training data of `bench_transfer.py`: rendered frames over scikit-image's offline photos.

A pool of full-size frames (480 x 720, the real pairs' size: drop sizes are
physical, so crops are cut after rendering) is rendered once; with
`refresh > 0`, that many pool frames are re-rendered (new photo crop, new
drops) every `refresh_every` steps, so the drops keep changing over training.
The real pair's clean image is never used.
"""

from __future__ import annotations

import numpy as np

from tf_deraindrop.data.masks import compute_mask
from tf_deraindrop.synthetic.synthesize import fit_to_size
from tf_deraindrop.utils.images import to_float_rgb

FRAME = (480, 720)

#: Colour photographs in scikit-image's own data folder (no download).
COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")
#: Natural grey photographs and textures there, tinted at random when used.
GREY = ("camera", "grass", "gravel", "brick")


def load_photos(which: str = "colour") -> list[np.ndarray]:
    """Float RGB photos: `"colour"` (6) or `"all"` (also the 4 grey ones, as RGB)."""
    import skimage.data

    photos = []
    for name in COLOUR + (GREY if which == "all" else ()):
        if name.startswith("motorcycle"):
            array = skimage.data.stereo_motorcycle()[0 if name.endswith("left") else 1]
        else:
            array = getattr(skimage.data, name)()
        photos.append(to_float_rgb(array))
    return photos


def jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flip, exposure, contrast, saturation and a colour cast (grey photos get colour)."""
    if rng.uniform() < 0.5:
        image = image[:, ::-1]
    gray = image.mean(axis=-1, keepdims=True)
    saturation = rng.uniform(0.6, 1.3) if np.ptp(image - gray) > 1e-3 else 0.0
    image = gray + saturation * (image - gray)
    if saturation == 0.0:  # a grey photo: a random tint
        image = image * rng.uniform(0.75, 1.1, size=3)
    mean = image.mean()
    image = mean + rng.uniform(0.8, 1.2) * (image - mean)
    image = image * rng.uniform(0.7, 1.25) * rng.uniform(0.94, 1.06, size=3)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def render_frame(photos, rng, renderer: str, preset: str, overrides: dict, augment: bool):
    """One `(rainy, clean, mask)` frame; the mask by the dataset's rule (as the real masks)."""
    from tf_deraindrop.synthetic.classic import render_raindrops as render_classic
    from tf_deraindrop.synthetic.render import render_raindrops

    photo = photos[int(rng.integers(len(photos)))]
    clean = fit_to_size(photo, FRAME, rng)
    clean = jitter(clean, rng) if augment else np.ascontiguousarray(clean[:, ::-1])
    if renderer == "classic":
        rainy, _ = render_classic(clean, seed=rng, **overrides)
    else:
        rainy, _ = render_raindrops(clean, seed=rng, preset=preset, **overrides)
    return rainy, clean, compute_mask(rainy, clean)


class Pool:
    """Rendered frames to crop from, optionally refreshed as training goes."""

    def __init__(self, count: int, seed: int, **render_args):
        self.rng = np.random.default_rng(seed)
        self.render_args = render_args
        self.frames = [self._render() for _ in range(count)]
        self.next = 0

    def _render(self):
        return render_frame(rng=self.rng, **self.render_args)

    def refresh(self, count: int) -> None:
        """Re-renders the `count` oldest frames."""
        for _ in range(count):
            self.frames[self.next] = self._render()
            self.next = (self.next + 1) % len(self.frames)

    def batch(self, size: int, crop: int, rng: np.random.Generator):
        """Random crops: float32 `(rainy, clean, mask[..., None])`."""
        out = [[], [], []]
        for i in rng.integers(len(self.frames), size=size):
            frame = self.frames[int(i)]
            y = int(rng.integers(FRAME[0] - crop + 1))
            x = int(rng.integers(FRAME[1] - crop + 1))
            for k, array in enumerate(frame):
                out[k].append(array[y : y + crop, x : x + crop])
        rainy, clean, mask = (np.stack(a).astype(np.float32) for a in out)
        return rainy, clean, mask[..., None]


def parse_overrides(items: list[str]) -> dict:
    """`["coverage=0.1", "drop_radius=(0.4, 1.2)"]` -> renderer keyword arguments."""
    import ast

    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return overrides
