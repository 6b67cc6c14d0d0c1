"""On-the-fly photographic augmentation built from the synthesis transforms.

:class:`RandomPhotographic` applies CheXphoto's transforms (``chexphoto.transforms``, the very
functions ``chexphoto synthesize`` uses) while a model trains, as the paper suggests for making
models robust to photos. It needs no torch: it takes and returns ``uint8`` numpy arrays or PIL
images, so it drops into a torchvision ``Compose`` or into :class:`~chexphoto.learning.data.CheXpertDataset`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import numpy as np

from chexphoto import transforms as tf
from chexphoto.seeding import derive_rng

#: Named transform sets for ``--augment`` / ``transforms=``.
AUGMENT_SETS = ("none", "photographic", "digital", "default", "all")


def transform_set(name_or_names: str | Iterable[str]) -> list[str]:
    """Resolve a set name or a list/comma-separated string of transform names.

    ``photographic`` and ``digital`` are the transforms of the paper's two synthetic sets
    (glare_matte, moire, tilt / random_digital); ``default`` is both; ``all`` every registered
    transform except ``identity``; ``none`` is empty.
    """
    if isinstance(name_or_names, str):
        key = name_or_names.strip()
        if key == "none":
            return []
        if key in ("photographic", "digital"):
            return [name for name, _ in tf.PRESETS[key]]
        if key == "default":
            return transform_set("digital") + transform_set("photographic")
        if key == "all":
            return [n for n in tf.names() if n != "identity"]
        names = [n.strip() for n in key.split(",") if n.strip()]
    else:
        names = [str(n) for n in name_or_names]
    for name in names:
        tf.get(name)  # KeyError naming the known transforms
    if len(set(names)) != len(names):
        raise ValueError(f"transform listed twice in {names}")
    return names


class RandomPhotographic:
    """Randomly apply CheXphoto transforms to an image (numpy ``uint8`` or PIL; same kind returned).

    On each call, with probability ``p`` the image is transformed: ``per_image`` distinct
    transforms are drawn uniformly from ``transforms`` (applied in the order they are listed, so
    the photographic set keeps the paper's glare -> moire -> tilt order), each at a level drawn
    uniformly from ``levels``; each transform's own parameters are then sampled as in synthesis.

    Randomness:

    * ``seed=None``: fresh OS entropy on every call (plain augmentation);
    * ``seed`` set and ``key`` passed (``t(img, key=(path, epoch))``, what the dataset does): the
      draw comes from ``derive_rng("augment", seed, key)`` only, so it does not depend on worker
      processes or order;
    * ``seed`` set and no ``key``: the k-th call of this instance uses ``(seed, k)``.

    ``last_chain`` holds the (name, level) steps of the most recent call (for inspection).
    """

    #: tells CheXpertDataset to pass ``key=(path, epoch)``
    accepts_key = True

    def __init__(self, transforms: str | Sequence[str] = "default", levels: Sequence[int] = (1, 2),
                 p: float = 0.5, seed: int | None = None, per_image: int = 1):
        self.transforms = transform_set(transforms)
        if not self.transforms:
            raise ValueError("RandomPhotographic needs at least one transform")
        self.levels = tuple(tf.registry.check_level(level) for level in levels)
        if not self.levels:
            raise ValueError("RandomPhotographic needs at least one level")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not 1 <= int(per_image) <= len(self.transforms):
            raise ValueError(f"per_image must be between 1 and {len(self.transforms)}")
        self.p, self.seed, self.per_image = float(p), seed, int(per_image)
        self._calls = 0
        self._lock = threading.Lock()
        self.last_chain: list[tuple[str, int]] = []

    def _rng(self, key) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        if key is None:
            with self._lock:
                key = ["call", self._calls]
                self._calls += 1
        return derive_rng("augment", self.seed, key)

    def draw_chain(self, rng: np.random.Generator) -> tf.Chain | None:
        """The chain to apply (or ``None`` for "leave the image as it is")."""
        if rng.random() >= self.p:
            return None
        picks = sorted(rng.choice(len(self.transforms), size=self.per_image, replace=False).tolist())
        return tf.Chain([(self.transforms[i], self.levels[int(rng.integers(len(self.levels)))])
                         for i in picks])

    def __call__(self, image, key=None):
        """Transform ``image``; ``key`` (e.g. ``(path, epoch)``) makes a seeded draw per item."""
        is_pil = not isinstance(image, np.ndarray)
        if is_pil and not hasattr(image, "convert"):
            raise TypeError(
                f"RandomPhotographic works on uint8 numpy arrays or PIL images (before ToTensor), "
                f"got {type(image).__name__}"
            )
        if is_pil:
            from PIL import Image

            mode = image.mode
            array = np.asarray(image.convert("RGB" if mode not in ("L", "RGB") else mode))
        else:
            array = image
        if array.dtype != np.uint8:
            raise ValueError(f"RandomPhotographic expects a uint8 image, got {array.dtype}")
        rng = self._rng(key)
        chain = self.draw_chain(rng)
        self.last_chain = [(s.name, s.level) for s in chain.steps] if chain else []
        out = chain(array, rng) if chain is not None else array
        if is_pil:
            return Image.fromarray(np.ascontiguousarray(out))
        return out

    def __repr__(self) -> str:
        return (f"RandomPhotographic(transforms={self.transforms!r}, levels={self.levels!r}, "
                f"p={self.p}, seed={self.seed!r}, per_image={self.per_image})")

    def __getstate__(self):
        # picklable for DataLoader worker processes (locks and counters are not)
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class FixedTransform:
    """Apply one transform at one level, seeded per image: ``derive_rng(seed, name, level, path)``.

    What ``chexphoto benchmark`` uses: every image gets the same transformation wherever and
    whenever it is processed.
    """

    accepts_key = True

    def __init__(self, name: str, level: int, seed: int = 0):
        self.transform = tf.get(name)
        self.name, self.level, self.seed = name, tf.registry.check_level(level), int(seed)

    def __call__(self, image: np.ndarray, key=None) -> np.ndarray:
        # the dataset passes (Path, epoch); a benchmark condition is the same in every epoch
        path = key[0] if isinstance(key, list | tuple) else key
        rng = derive_rng(self.seed, self.name, self.level, path)
        return self.transform(image, self.level, rng)

    def __repr__(self) -> str:
        return f"FixedTransform({self.name!r}, {self.level}, seed={self.seed})"
