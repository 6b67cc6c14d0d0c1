"""Registry of transforms, severity levels, chains and the paper's presets.

A transform is two functions, in the albumentations ``get_params`` / ``apply`` style:

* ``sample(rng, level, height, width) -> params``: the only place with randomness; ``params`` is
  a JSON-serialisable dict holding everything ``apply`` needs (including the pixel ``scale``);
* ``apply(image, params) -> image``: pure and deterministic, so any output can be re-rendered
  from its recorded params (``chexphoto replay``).

Transforms that change the image size also give ``output_size(params, height, width)`` so a
:class:`Chain` can sample every step before applying any.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

LEVELS = (1, 2, 3, 4)

#: Pixel sizes in the reference are tuned for a 1024 px short side; they scale with the image.
REFERENCE_SHORT_SIDE = 1024


def pixel_scale(height: int, width: int) -> float:
    """Factor applied to the reference's pixel sizes for an image of this size."""
    return min(int(height), int(width)) / REFERENCE_SHORT_SIDE


SampleFn = Callable[[np.random.Generator, int, int, int], dict]
ApplyFn = Callable[[np.ndarray, dict], np.ndarray]
SizeFn = Callable[[dict, int, int], tuple[int, int]]


def _same_size(params: dict, height: int, width: int) -> tuple[int, int]:
    return height, width


@dataclass(frozen=True)
class Transform:
    """One named transformation: a ``sample`` step and a pure ``apply`` step."""

    name: str
    family: str  # "digital", "photographic", "optical", "geometric", ...
    summary: str
    sample: SampleFn
    apply: ApplyFn
    #: human-readable parameters per level, for ``chexphoto transforms`` and the README
    level_table: Callable[[int], dict] = field(default=lambda level: {})
    output_size: SizeFn = _same_size

    def __call__(self, image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        return self.apply(image, self.sample(rng, check_level(level), h, w))


REGISTRY: dict[str, Transform] = {}


def register(transform: Transform) -> Transform:
    if transform.name in REGISTRY:
        raise ValueError(f"transform {transform.name!r} registered twice")
    REGISTRY[transform.name] = transform
    return transform


def check_level(level: int) -> int:
    if isinstance(level, bool) or int(level) != level or int(level) not in LEVELS:
        raise ValueError(f"severity level must be one of {LEVELS}, got {level!r}")
    return int(level)


def get(name: str) -> Transform:
    _load_families()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown transform {name!r}; known: {', '.join(names())}") from None


#: Family modules in the order their transforms are listed (the issue's / Table 2's order).
FAMILY_MODULES = ("photometric", "optics", "geometry", "screen")


def _listing_position(item: tuple[int, Transform]) -> tuple[int, int]:
    index, transform = item
    module = transform.apply.__module__.rsplit(".", 1)[-1]
    family = FAMILY_MODULES.index(module) if module in FAMILY_MODULES else len(FAMILY_MODULES)
    return (family, index)


def names() -> list[str]:
    """Registered transform names: by family module, then in registration order."""
    _load_families()
    return [t.name for _, t in sorted(enumerate(REGISTRY.values()), key=_listing_position)]


_loaded = False


def _load_families() -> None:
    """Import the family modules (they register themselves) on first use."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for family in FAMILY_MODULES:
        importlib.import_module(f"chexphoto.transforms.{family}")


@dataclass(frozen=True)
class Step:
    name: str
    level: int

    def to_json(self) -> list:
        return [self.name, self.level]


class Chain:
    """A list of (transform name, level) applied in order, with the same two steps.

    >>> chain = Chain([("glare_matte", 1), ("moire", 1), ("tilt", 1)])
    >>> params = chain.sample(np.random.default_rng(0), 1024, 1024)
    >>> out = chain.apply(np.zeros((1024, 1024), np.uint8), params)
    """

    def __init__(self, steps: Iterable[tuple[str, int] | Sequence]):
        self.steps = tuple(Step(str(name), check_level(level)) for name, level in steps)
        for step in self.steps:
            get(step.name)  # fail early on unknown names

    @classmethod
    def from_names(cls, names_: Iterable[str] | str, level: int) -> Chain:
        if isinstance(names_, str):
            names_ = [n.strip() for n in names_.split(",") if n.strip()]
        return cls([(n, level) for n in names_])

    def spec(self) -> list[list]:
        """JSON form: ``[[name, level], ...]``."""
        return [s.to_json() for s in self.steps]

    def sample(self, rng: np.random.Generator, height: int, width: int) -> list[dict]:
        """Draw every step's params, tracking the image size through size-changing steps."""
        recorded = []
        for step in self.steps:
            transform = get(step.name)
            params = transform.sample(rng, step.level, height, width)
            recorded.append({"name": step.name, "level": step.level, "params": params})
            height, width = transform.output_size(params, height, width)
        return recorded

    def apply(self, image: np.ndarray, recorded: Sequence[dict]) -> np.ndarray:
        if len(recorded) != len(self.steps):
            raise ValueError("recorded params do not match the chain's steps")
        for step, rec in zip(self.steps, recorded, strict=True):
            if rec["name"] != step.name:
                raise ValueError(f"recorded step {rec['name']!r} where the chain has {step.name!r}")
            image = get(step.name).apply(image, rec["params"])
        return image

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.sample(rng, *image.shape[:2]))

    def __repr__(self) -> str:
        return f"Chain({[(s.name, s.level) for s in self.steps]!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chain) and self.steps == other.steps

    def __hash__(self) -> int:
        return hash(self.steps)


def apply_recorded(image: np.ndarray, recorded: Sequence[dict]) -> np.ndarray:
    """Re-render from a manifest's ``chain`` entry (list of ``{name, level, params}``)."""
    return Chain([(r["name"], r["level"]) for r in recorded]).apply(image, recorded)


#: The paper's two synthetic sets.
PRESETS: dict[str, list[tuple[str, int]]] = {
    "digital": [("random_digital", 1)],
    "photographic": [("glare_matte", 1), ("moire", 1), ("tilt", 1)],
}


def preset(name: str) -> Chain:
    try:
        return Chain(PRESETS[name])
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def params_roundtrip(params: object) -> object:
    """JSON round-trip (what a manifest stores); used by tests and replay."""
    return json.loads(json.dumps(params))
