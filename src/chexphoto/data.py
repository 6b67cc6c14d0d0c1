"""The torch Dataset over CheXpert / CheXphoto CSVs (issue 5's ``chexphoto.data``).

Needs the optional torch extra (``pip install 'chexphoto[torch]'``). The code lives in
:mod:`chexphoto.learning.data`; this module is the public name.
"""

from chexphoto.learning.data import CheXpertDataset

__all__ = ["CheXpertDataset"]
