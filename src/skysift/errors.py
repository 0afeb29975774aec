"""Errors and warnings raised by skysift.

Error policy
------------
* Every error skysift raises on purpose is a :class:`SkysiftError`.
* Errors about bad values also subclass :class:`ValueError`, errors about missing files
  :class:`FileNotFoundError`, so ``except ValueError`` keeps working for callers who do not know
  skysift.
* A message names what was wrong (argument, file, HDU), the value seen and what was expected:
  ``"sky.fits[SCI]: image data is 1-D with shape (512,); expected a 2-D image or a 3-D cube"``.
* Problems a run can survive (a broken WCS, an empty catalog) are warnings of
  :class:`SkysiftWarning`, never silent and never a crash.
"""

from __future__ import annotations

__all__ = [
    "EmptyCatalogWarning",
    "FitsFileNotFoundError",
    "FitsFormatError",
    "ImageShapeError",
    "InvalidParameterError",
    "MaskedImageError",
    "PsfUnknownError",
    "SkysiftError",
    "SkysiftWarning",
    "WCSWarning",
]


class SkysiftError(Exception):
    """Base class of every error skysift raises on purpose."""


class InvalidParameterError(SkysiftError, ValueError):
    """An argument or configuration value is outside its allowed range or set."""


class FitsFormatError(SkysiftError, ValueError):
    """A file is not readable FITS, is truncated, or has no usable image HDU."""


class ImageShapeError(SkysiftError, ValueError):
    """Image data has the wrong number of dimensions, mismatched bands, or is too small."""


class MaskedImageError(SkysiftError, ValueError):
    """Every pixel of an image is masked (NaN, inf, or flagged by the mask/weight file)."""


class PsfUnknownError(InvalidParameterError):
    """A model needs the image's PSF FWHM, and it is neither given, in the header, nor
    measurable on the image (too few bright point sources)."""


class SkysiftWarning(UserWarning):
    """Base class of skysift warnings."""


class WCSWarning(SkysiftWarning):
    """A header carries a WCS that could not be used; sky coordinates are omitted."""


class EmptyCatalogWarning(SkysiftWarning):
    """A detector found no sources; the catalog is empty but has the full schema."""


class FitsFileNotFoundError(SkysiftError, FileNotFoundError):
    """An input file (image, mask or weight map) does not exist."""
