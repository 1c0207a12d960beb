"""Negative samplers, and a factory that builds one by name."""

from __future__ import annotations

from icpns_stream.samplers.base import Negative, Sampler, SamplingContext
from icpns_stream.samplers.hard import HardSampler
from icpns_stream.samplers.icpns import IcpnsSampler
from icpns_stream.samplers.popularity import PopularitySampler
from icpns_stream.samplers.uniform import UniformSampler

__all__ = [
    "SAMPLERS",
    "HardSampler",
    "IcpnsSampler",
    "Negative",
    "PopularitySampler",
    "Sampler",
    "SamplingContext",
    "UniformSampler",
    "make_sampler",
]

#: Names :func:`make_sampler` accepts.
SAMPLERS = ("icpns", "uniform", "popularity", "hard")


def make_sampler(
    name: str, *, seed: int = 0, mix: float = 0.0, candidates: int = 10
) -> Sampler:
    """Build the sampler called ``name``.

    ``mix`` is used by ``"icpns"`` only and ``candidates`` by ``"hard"`` only;
    the others ignore them, so one set of options can build any sampler.

    Examples
    --------
    >>> make_sampler("icpns", seed=3, mix=0.5).mix
    0.5
    >>> make_sampler("random")
    Traceback (most recent call last):
    ...
    ValueError: name must be one of icpns, uniform, popularity, hard, got 'random'
    """
    if name == "icpns":
        return IcpnsSampler(seed=seed, mix=mix)
    if name == "uniform":
        return UniformSampler(seed=seed)
    if name == "popularity":
        return PopularitySampler(seed=seed)
    if name == "hard":
        return HardSampler(seed=seed, candidates=candidates)
    raise ValueError(f"name must be one of {', '.join(SAMPLERS)}, got {name!r}")
