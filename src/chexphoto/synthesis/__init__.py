"""The synthesis engine: build CheXphoto-style synthetic sets from CheXpert CSVs, reproducibly.

>>> from chexphoto.synthesis import synthesize
>>> from chexphoto.transforms import preset
>>> result = synthesize("valid.csv", "data", "CheXphoto-v1.0", preset("digital"))  # doctest: +SKIP

Attributes are imported lazily so that worker processes (which only need
:mod:`chexphoto.synthesis.render`) do not pay for pandas.
"""

from __future__ import annotations

__all__ = ["DatasetExistsError", "SynthesisResult", "synthesize"]


def __getattr__(name: str):
    if name in __all__:
        from chexphoto.synthesis import run

        return getattr(run, name)
    raise AttributeError(f"module 'chexphoto.synthesis' has no attribute {name!r}")
