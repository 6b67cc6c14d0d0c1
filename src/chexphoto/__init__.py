"""chexphoto: make, collect, curate and benchmark photographs of chest x-rays (CheXphoto)."""

__version__ = "0.1.0"
