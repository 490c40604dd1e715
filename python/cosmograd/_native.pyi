# Type stubs of the extension module (crates/pm-py); the docstrings, with units, are on the
# functions themselves (help(cosmograd.simulate)) and in docs/python.md.
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike
ConfigLike = Union["Config", Mapping[str, Any], str, "os.PathLike[str]", None]

class Config:
    def __init__(self, source: ConfigLike = None) -> None: ...
    @staticmethod
    def from_toml(text: str) -> "Config": ...
    def to_toml(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def replace(self, changes: Mapping[str, Any]) -> "Config": ...
    @property
    def particles(self) -> int: ...
    @property
    def mesh(self) -> int: ...
    @property
    def box_size(self) -> float: ...
    @property
    def precision(self) -> str: ...
    @property
    def steps(self) -> int: ...
    @property
    def a_start(self) -> float: ...
    @property
    def a_stop(self) -> float: ...
    @property
    def seed(self) -> int: ...

def simulate(
    config: ConfigLike = None,
    white_noise: Optional[ArrayLike] = None,
    *,
    force_correction: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]: ...
def power_spectrum(delta: ArrayLike, box_size: float, deconvolve: bool = True) -> Dict[str, np.ndarray]: ...
def cross_correlation(a: ArrayLike, b: ArrayLike, box_size: float, deconvolve: bool = True) -> Dict[str, np.ndarray]: ...
def value_and_grad(
    config: ConfigLike = None,
    white_noise: Optional[ArrayLike] = None,
    loss: str = "field-mse",
    target: Optional[ArrayLike] = None,
    *,
    checkpoint_every: Optional[int] = None,
    force_correction: Optional[Mapping[str, Any]] = None,
) -> Tuple[float, Dict[str, Any]]: ...
def vjp(
    config: ConfigLike = None,
    white_noise: Optional[ArrayLike] = None,
    *,
    density: Optional[ArrayLike] = None,
    positions: Optional[ArrayLike] = None,
    velocities: Optional[ArrayLike] = None,
    checkpoint_every: Optional[int] = None,
    force_correction: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]: ...
def reconstruct(
    observed: Optional[ArrayLike] = None,
    config: ConfigLike = None,
    *,
    white_noise: Optional[ArrayLike] = None,
    noise: Optional[float] = None,
    noise_power: Optional[Tuple[ArrayLike, ArrayLike]] = None,
    smoothing: float = 0.0,
    data_mesh: Optional[int] = None,
    iterations: int = 100,
    schedule: Optional[Sequence[Tuple[float, int]]] = None,
    preconditioner: Optional[str] = "measured",
    fit_cosmology: bool = False,
    fit_start: Optional[Tuple[float, float]] = None,
    checkpoint_every: Optional[int] = None,
) -> Dict[str, Any]: ...
def _panic_for_tests() -> None: ...

