"""The pipeline's stage interfaces: each classical stage can be replaced by a network.

A stage is any object with a `name` and the method below; the pipeline calls nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from cctbx import crystal, miller, xray

from aisolve.core.data_prep import PreparedData
from aisolve.core.model import Atom

# progress(fraction 0..1 within the stage, message)
Progress = Callable[[float, str], None]


def no_progress(_fraction: float, _message: str) -> None:
    pass


@dataclass
class PhasingTrial:
    seed: int
    figure_of_merit: float  # truth-free: map skewness with the trial's phases (dual space: CC of E^2)
    cc: float | None = None  # smtbx symmetry-search correlation of the trial
    iterations: int = 0


@dataclass
class PhasingResult:
    route: str
    f_calc: miller.array | None  # phased amplitudes in the data's space group, or None if unsolved
    trials: list[PhasingTrial] = field(default_factory=list)
    figure_of_merit: float | None = None
    notes: list[str] = field(default_factory=list)
    # every distinct candidate (figure of merit, phased amplitudes), best figure first
    candidates: list[tuple[float, miller.array]] = field(default_factory=list)
    # phases (and amplitude estimates) a phaser extends to reflections that were not measured
    extension: miller.array | None = None

    @property
    def solved(self) -> bool:
        return self.f_calc is not None


@dataclass
class Peak:
    xyz: tuple[float, float, float]
    height: float  # map value in units of the map's sigma


class PhaserNotApplicable(ValueError):
    """A phaser refuses data outside its domain (the neural phaser: space groups other than P2_1/c)."""


class Phaser(Protocol):
    """A phasing stage. One whose `falls_back_to_flipping` is true is followed by charge flipping
    when it refuses the data (PhaserNotApplicable) or its best candidate refines poorly."""
    name: str

    def phase(self, data: PreparedData, symmetry: crystal.symmetry, time_budget: float,
              progress: Progress = no_progress) -> PhasingResult: ...


# The element a typer gives a peak it judges to be no atom; the pipeline removes such atoms.
NOT_AN_ATOM = "Q"
# The key of a typer's 'not an atom' probability in Atom.element_probabilities
NO_ATOM = "no atom"


def confidence_given_atom(probabilities: dict[str, float], element: str) -> float:
    """`element`'s probability given that an atom is there (the NO_ATOM share taken out): how sure
    a typer is of the element of a site the pipeline keeps."""
    return min(1.0, probabilities.get(element, 0.0) / max(1.0 - probabilities.get(NO_ATOM, 0.0), 1e-12))


class AtomTyper(Protocol):
    """Turns peaks (or a provisional model) into atoms with elements and per-element probabilities."""
    name: str

    def assign(self, atoms: list[Atom], context: "TypingContext") -> list[Atom]: ...


@dataclass
class TypingContext:
    symmetry: crystal.symmetry
    contents: dict[str, float]  # expected atoms in the cell; empty when the formula is unknown
    data: PreparedData
    electron_estimates: list[float] | None = None  # refined 'occupancy x Z(C)' per atom, if available
    # phased amplitudes of the map the atoms stand in: the chosen charge-flipping solution at
    # first, then the observed amplitudes with the model's phases
    map_coefficients: miller.array | None = None
    z: float | None = None  # formula units per cell (SHELX ZERR), when known
    # without contents: the elements a formula named whose counts could not be believed
    # (core.contents); empty: any element
    candidate_elements: tuple[str, ...] = ()


class HydrogenCounter(Protocol):
    """How many riding H each non-H atom of a refined model carries (a network, say); the pipeline
    places them with the geometry rules' AFIX codes for those counts."""
    name: str

    def counts(self, xs: xray.structure, contents: dict[str, float] | None,
               density: Callable[[tuple[float, float, float]], float] | None = None,
               temperature_c: float | None = None) -> list[int]:
        """`density`: the sigma-scaled difference density of the H-free model, when data are at hand."""
        ...
