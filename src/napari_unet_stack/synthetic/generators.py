"""The public generators: `nuclei_stack`, `nuclei_image` and the large sample image."""

from __future__ import annotations

from .simulate import NucleiParams, SyntheticNuclei, simulate

__all__ = [
    "GENERATOR_VERSION",
    "LARGE_IMAGE_SEED",
    "LARGE_IMAGE_SHAPE",
    "large_image",
    "nuclei_image",
    "nuclei_stack",
]

#: Bumped whenever the generator's output changes for a given seed (cache key).
GENERATOR_VERSION = 1
#: Shape and seed of the large 2D sample image (``load_sample("large_image")``).
LARGE_IMAGE_SHAPE = (4096, 4096)
LARGE_IMAGE_SEED = 4096

_D = NucleiParams()  # the defaults


def _check_shape(shape, ndim: int, name: str = "shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"`{name}` must be a tuple of {ndim} ints, got {shape!r}") from None
    if len(shape) != ndim or min(shape) < 1:
        raise ValueError(f"`{name}` must be {ndim} positive ints, got {shape!r}")
    return shape


def nuclei_stack(
    shape: tuple[int, int, int] = (16, 256, 256),
    *,
    seed: int | None = 0,
    radius: tuple[float, float] = _D.radius,
    fill: float = _D.fill,
    elongated_fraction: float = _D.elongated_fraction,
    touching_fraction: float = _D.touching_fraction,
    z_scale: float = _D.z_scale,
    blur: float = _D.blur,
    photons: float = _D.photons,
    read_noise: float = _D.read_noise,
    offset: float = _D.offset,
    background: float = _D.background,
    slice_variation: float = _D.slice_variation,
) -> SyntheticNuclei:
    """A (Z, Y, X) stack of sections through ellipsoidal nuclei.

    Parameters
    ----------
    shape : (Z, Y, X) tuple of int
        Size of the stack.
    seed : int or None
        Seed of ``numpy.random.default_rng``; the same seed gives the same stack.
    radius : (float, float)
        Range of the nuclei's equivalent radii in pixels (in the xy plane).
    fill : float
        Approximate fraction of a slice covered by nuclei.
    elongated_fraction : float
        Fraction of nuclei with an aspect ratio of 1.5-2.3 (others 1.0-1.25).
    touching_fraction : float
        Probability that a new nucleus is pressed against an existing one.
    z_scale : float
        z semi-axis in slices per xy pixel of radius (0.45: a 10-px nucleus spans ~9 slices).
    blur : float
        Standard deviation of the point-spread function in xy pixels (0.8 slice in z).
    photons : float
        Expected photon count of a nucleus of average brightness (sets the noise level).
    read_noise, offset : float
        Camera read noise (std) and offset, in counts.
    background : float
        Mean background relative to an average nucleus.
    slice_variation : float
        Strength of the slice-to-slice changes (bleaching, flicker, drift); 0 disables.

    Returns
    -------
    SyntheticNuclei
        ``image`` (uint16), ``instances`` (uint16/uint32), ``labels`` (uint8, 0/1).
    """
    params = NucleiParams(
        radius=radius, fill=fill, elongated_fraction=elongated_fraction,
        touching_fraction=touching_fraction, z_scale=z_scale, blur=blur, photons=photons,
        read_noise=read_noise, offset=offset, background=background,
        slice_variation=slice_variation,
    )  # fmt: skip
    return simulate(_check_shape(shape, 3), seed, params)


def nuclei_image(
    shape: tuple[int, int] = (512, 512),
    *,
    seed: int | None = 0,
    radius: tuple[float, float] = _D.radius,
    fill: float = _D.fill,
    elongated_fraction: float = _D.elongated_fraction,
    touching_fraction: float = _D.touching_fraction,
    blur: float = _D.blur,
    photons: float = _D.photons,
    read_noise: float = _D.read_noise,
    offset: float = _D.offset,
    background: float = _D.background,
) -> SyntheticNuclei:
    """A single 2D (Y, X) image of nuclei; parameters as in `nuclei_stack`.

    Examples
    --------
    >>> img = nuclei_image((96, 128), seed=3)
    >>> img.image.shape, int(img.instances.max()) > 5
    ((96, 128), True)
    """
    params = NucleiParams(
        radius=radius, fill=fill, elongated_fraction=elongated_fraction,
        touching_fraction=touching_fraction, z_scale=1.0, blur=blur, photons=photons,
        read_noise=read_noise, offset=offset, background=background, slice_variation=0.0,
    )  # fmt: skip
    out = simulate((1, *_check_shape(shape, 2)), seed, params)
    return SyntheticNuclei(*(a[0] for a in out))


def large_image() -> SyntheticNuclei:
    """The large 2D sample (``LARGE_IMAGE_SHAPE``, seed ``LARGE_IMAGE_SEED``); ~10 s on a CPU."""
    return nuclei_image(LARGE_IMAGE_SHAPE, seed=LARGE_IMAGE_SEED)
