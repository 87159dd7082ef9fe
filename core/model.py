"""The data model shared by every stage: a crystal structure and a set of reflections.

Conventions: fractional coordinates; anisotropic U in SHELX/CIF order
(U11, U22, U33, U23, U13, U12) and in the U_cif convention; occupancies are real occupancies
(SHELX free-variable codes are kept aside in `Atom.shelx_codes` so files round-trip).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cctbx import adptbx, crystal, miller, sgtbx, uctbx, xray
from cctbx.array_family import flex

from aisolve.core.elements import hill_formula


@dataclass
class Atom:
    label: str
    element: str
    xyz: tuple[float, float, float]
    occupancy: float = 1.0  # chemical occupancy (SHELX's sof times the site-symmetry order)
    uiso: float | None = 0.05
    uaniso: tuple[float, float, float, float, float, float] | None = None
    part: int = 0
    part_params: str = ""  # extra PART arguments (a default sof) kept verbatim
    # SHELX AFIX m n in force for this atom (0: none); afix_start marks the first atom of a group,
    # so that two neighbouring groups with the same code stay two groups.
    afix: int = 0
    afix_start: bool = False
    afix_params: str = ""  # extra AFIX arguments (d, sof, U) kept verbatim
    riding_u: float | None = None  # SHELX negative Uiso: Uiso = riding_u * Ueq(pivot)
    residue: str = ""  # RESI card in force ("" for none), e.g. "2 CCF3"
    peak_height: float | None = None  # for Q-peaks (electrons / A^3)
    element_probabilities: dict[str, float] | None = None
    confidence: float | None = None
    # Raw SHELX parameter codes (x, y, z, sof, U) that were fixed or tied to free variables.
    shelx_codes: dict[str, float] = field(default_factory=dict)
    # Instruction lines that stood right before this atom in its source file (restraints, HFIX...).
    preceding_lines: list[str] = field(default_factory=list)

    @property
    def is_peak(self) -> bool:
        return self.peak_height is not None

    def u_equivalent(self, cell: uctbx.unit_cell) -> float:
        if self.uaniso is not None:
            return adptbx.u_star_as_u_iso(cell, u_cif_to_u_star(cell, self.uaniso))
        return float(self.uiso if self.uiso is not None else 0.05)


def u_cif_to_u_star(cell: uctbx.unit_cell, u: tuple[float, ...]) -> tuple[float, ...]:
    u11, u22, u33, u23, u13, u12 = u
    return adptbx.u_cif_as_u_star(cell, (u11, u22, u33, u12, u13, u23))


def u_star_to_u_cif(cell: uctbx.unit_cell, u_star: tuple[float, ...]) -> tuple[float, ...]:
    u11, u22, u33, u12, u13, u23 = adptbx.u_star_as_u_cif(cell, u_star)
    return (u11, u22, u33, u23, u13, u12)


@dataclass
class Structure:
    cell: tuple[float, float, float, float, float, float]
    space_group: sgtbx.space_group
    title: str = "aisolve"
    wavelength: float = 0.71073
    cell_esd: tuple[float, ...] | None = None
    z: float | None = None
    # Cell contents: element -> number in the unit cell (SFAC/UNIT). Order is the SFAC order.
    cell_contents: dict[str, float] = field(default_factory=dict)
    atoms: list[Atom] = field(default_factory=list)
    peaks: list[Atom] = field(default_factory=list)
    fvar: list[float] = field(default_factory=lambda: [1.0])
    hklf: int | None = 4
    hklf_params: str = ""  # HKLF arguments after the code (scale, matrix...) kept verbatim
    temperature: float | None = None
    # SHELX cards we do not interpret (L.S., PLAN, WGHT, DISP, restraints...) kept for writing back.
    header_lines: list[str] = field(default_factory=list)
    trailing_lines: list[str] = field(default_factory=list)
    # Long-form SFAC scattering factors, verbatim, by element.
    sfac_long: dict[str, str] = field(default_factory=dict)
    disp_lines: list[str] = field(default_factory=list)
    source: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def unit_cell(self) -> uctbx.unit_cell:
        return uctbx.unit_cell(self.cell)

    @property
    def symmetry(self) -> crystal.symmetry:
        return crystal.symmetry(unit_cell=self.cell, space_group=self.space_group)

    @property
    def space_group_symbol(self) -> str:
        return str(sgtbx.space_group_info(group=self.space_group))

    @property
    def sfac(self) -> list[str]:
        """Element order for SFAC: the cell contents first, then any element only the atoms use."""
        order = list(self.cell_contents)
        for a in self.atoms:
            if a.element not in order:
                order.append(a.element)
        return order

    def formula(self) -> str:
        return hill_formula(self.cell_contents) if self.cell_contents else ""

    def non_h_atoms(self) -> list[Atom]:
        return [a for a in self.atoms if a.element not in ("H", "D")]

    def hydrogens(self) -> list[Atom]:
        return [a for a in self.atoms if a.element in ("H", "D")]

    def to_xray(self, include_hydrogens: bool = True) -> xray.structure:
        """A cctbx xray.structure of the atoms (Q-peaks excluded)."""
        uc = self.unit_cell
        scatterers = flex.xray_scatterer()
        for a in self.atoms:
            if not include_hydrogens and a.element in ("H", "D"):
                continue
            sc = xray.scatterer(label=a.label, site=a.xyz, occupancy=a.occupancy,
                                scattering_type=a.element)
            if a.uaniso is not None:
                sc.u_star = u_cif_to_u_star(uc, a.uaniso)
                sc.flags.set_use_u_aniso(True)
                sc.flags.set_use_u_iso(False)
            else:
                sc.u_iso = float(a.uiso if a.uiso is not None else 0.05)
                sc.flags.set_use_u_iso(True)
                sc.flags.set_use_u_aniso(False)
            scatterers.append(sc)
        xs = xray.structure(crystal_symmetry=self.symmetry, scatterers=scatterers)
        return xs

    def site_multiplicities(self) -> list[int]:
        sym = self.symmetry.special_position_settings(min_distance_sym_equiv=0.5)
        return [sym.site_symmetry(a.xyz).multiplicity() for a in self.atoms]

    def site_symmetry_order(self, xyz: tuple[float, float, float]) -> int:
        """Order of the site-symmetry group at xyz (1 on a general position).

        SHELX's sof is the chemical occupancy divided by this number; Atom.occupancy is chemical.
        """
        sym = self.symmetry.special_position_settings(min_distance_sym_equiv=0.5)
        return self.space_group.order_z() // sym.site_symmetry(xyz).multiplicity()

    def model_formula_per_cell(self) -> dict[str, float]:
        """Atoms of the model expanded to the cell, weighted by occupancy."""
        counts: dict[str, float] = {}
        for a, mult in zip(self.atoms, self.site_multiplicities()):
            counts[a.element] = counts.get(a.element, 0.0) + a.occupancy * mult
        return counts


def miller_indices_array(indices: flex.miller_index) -> np.ndarray:
    """(n, 3) int64 array of Miller indices, without a Python loop over tuples."""
    return np.rint(indices.as_vec3_double().as_numpy_array()).astype(np.int64).reshape(-1, 3)


@dataclass
class ReflectionData:
    """Measured reflections as read: not merged unless `merged` says so."""
    indices: np.ndarray  # (n, 3) int
    data: np.ndarray  # I (F^2) or F
    sigmas: np.ndarray
    is_intensity: bool = True
    batch: np.ndarray | None = None
    hklf: int = 4
    merged: bool = False
    # Symmetry carried by the file itself (CIF, MTZ); .hkl files carry none.
    cell: tuple[float, ...] | None = None
    space_group: sgtbx.space_group | None = None
    wavelength: float | None = None
    source: str | None = None
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def miller_array(self, symmetry: crystal.symmetry | None = None) -> miller.array:
        """A cctbx miller array (anomalous flag on: the data are not Friedel-averaged)."""
        if symmetry is None:
            if self.cell is None or self.space_group is None:
                raise ValueError("reflections carry no cell/space group; pass a symmetry")
            symmetry = crystal.symmetry(unit_cell=self.cell, space_group=self.space_group)
        ms = miller.set(symmetry, flex.miller_index([tuple(map(int, h)) for h in self.indices]),
                        anomalous_flag=True)
        arr = miller.array(ms, data=flex.double(self.data.astype(float)),
                           sigmas=flex.double(self.sigmas.astype(float)))
        return arr.set_observation_type_xray_intensity() if self.is_intensity \
            else arr.set_observation_type_xray_amplitude()

    def d_min(self, cell: uctbx.unit_cell) -> float:
        return float(cell.d(flex.miller_index([tuple(map(int, h)) for h in self.indices])).min_max_mean().min)

