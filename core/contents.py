"""Whether the cell contents (SHELX UNIT, a CIF's formula and Z, --formula) can be believed.

Placeholder UNIT lines ('UNIT 1 2 3 4 5', left by a program that only wanted the SFAC list) and
counts per formula unit instead of per cell are common in real files. Believed, they make the
pipeline look for a handful of atoms where there are dozens (DSR's p21n_cf3 in the real-data
benchmark: 13 non-H atoms in a 2,001 A^3 cell, phasing then keeps 3 peaks). The non-H volume
per atom tells: about 18 A^3 in organic crystals, 10-13 in dense inorganic ones, at most a few
times that in porous frameworks. Outside the bounds below the counts are dropped and only the
elements are kept as the candidates for typing.
"""
from __future__ import annotations

from dataclasses import dataclass

from cctbx import sgtbx

from aisolve.core.elements import hill_formula
from aisolve.core.model import Structure

# A^3 per non-H atom. The real-data entries span 9.7-23.9 (their placeholder UNIT: 154); the
# bounds leave room for denser minerals and porous frameworks with solvent-filled voids.
MIN_VOLUME_PER_ATOM = 5.0
MAX_VOLUME_PER_ATOM = 60.0


@dataclass
class ContentsInUse:
    contents: dict[str, float]  # expected atoms per cell; empty when unknown or not believed
    candidate_elements: tuple[str, ...] = ()  # non-H elements of contents whose counts were dropped
    problem: str | None = None  # why the counts were dropped
    minor_note: str | None = None  # which minor site-sharing elements were counted as their hosts


def _non_h(contents: dict[str, float]) -> dict[str, float]:
    return {el: n for el, n in contents.items() if n > 0 and el not in ("H", "D")}


def contents_problem(structure: Structure) -> str | None:
    """A message naming the file and the numbers when the contents cannot fill the cell, else None."""
    contents = structure.cell_contents
    non_h = _non_h(contents)
    n_atoms = sum(non_h.values())
    if not n_atoms:
        return None
    volume = structure.unit_cell.volume()
    per_atom = volume / n_atoms
    if MIN_VOLUME_PER_ATOM <= per_atom <= MAX_VOLUME_PER_ATOM:
        return None
    source = f"{structure.source}: " if structure.source else ""
    return (f"{source}the cell contents {hill_formula(contents)} hold {n_atoms:g} non-H atoms per cell, "
            f"{per_atom:.1f} A^3 each in the {volume:.0f} A^3 cell (plausible: {MIN_VOLUME_PER_ATOM:g}-"
            f"{MAX_VOLUME_PER_ATOM:g}, about 18 for organic crystals): a placeholder UNIT or counts per "
            f"formula unit? Their counts are ignored; their elements ({', '.join(sorted(non_h))}) "
            f"remain the candidates")


def contents_in_use(structure: Structure, use_formula: bool) -> ContentsInUse:
    if not use_formula or not structure.cell_contents:
        return ContentsInUse({})
    problem = contents_problem(structure)
    if problem:
        return ContentsInUse({}, tuple(sorted(_non_h(structure.cell_contents))), problem)
    contents, minor = majority_contents(structure.cell_contents, structure.space_group)
    if not minor:
        return ContentsInUse(structure.cell_contents)
    hosts = sorted(set(site_sharing(structure.cell_contents)) - set(minor))
    note = (f"site-sharing {', '.join(minor)} (fractional counts per cell) too scarce to be the main occupant "
            f"of any site: counted and typed as {', '.join(hosts)}; a mixed-site model is left to you (EXYZ/EADP)")
    return ContentsInUse(contents, minor_note=note)


# Per-cell counts further than this from a whole number are shares of sites (mixed occupancy)
MIXED_SITE_TOLERANCE = 0.05


def site_sharing(contents: dict[str, float]) -> list[str]:
    """Non-H elements with fractional counts per cell: they share sites with one another."""
    return [el for el, n in _non_h(contents).items() if abs(n - round(n)) > MIXED_SITE_TOLERANCE]


def majority_contents(contents: dict[str, float], space_group: sgtbx.space_group
                      ) -> tuple[dict[str, float], list[str]]:
    """Contents in which site-sharing elements too few to be the main occupant of even the
    smallest site are counted as the other site-sharing elements (in proportion), and the
    elements so removed.

    A model has one element per site and is matched on each site's main occupant. Columbite
    (Fe,Mn)(Nb,Ta)2O6 in Pbcn (cod 9003733: Fe3.16 Mn0.84 Nb7.60 Ta0.40 O24 per cell): no
    site can hold a majority of Mn or Ta, yet both typers put Nb on the Fe site and Ta on the Nb
    site; counted as Fe and Nb, all 5 atoms are right (tests/test_contents.py). The assumption:
    fractional counts are shares of common sites; two unrelated partly occupied species (a
    water and a chloride) would be pooled too."""
    shared = site_sharing(contents)
    if len(shared) < 2:
        return contents, []
    order_z = space_group.order_z()
    table = sgtbx.space_group_info(group=space_group).wyckoff_table()
    smallest_site = min(table.position(i).multiplicity() for i in range(table.size())) / order_z
    minor = sorted(el for el in shared if contents[el] / order_z < 0.5 * smallest_site)
    hosts = [el for el in shared if el not in minor]
    if not minor or not hosts:
        return contents, []
    scale = sum(contents[el] for el in shared) / sum(contents[el] for el in hosts)
    return ({el: n * scale if el in hosts else n for el, n in contents.items() if el not in minor}, minor)


# Per-cell count difference (atoms) between the formula and the listed atoms that is not rounding
COUNT_TOLERANCE = 0.5
COUNT_TOLERANCE_SHARE = 0.05


def contents_disagreement(structure: Structure) -> str | None:
    """A message when a model's non-H atoms (occupancy times multiplicity) do not add up to its
    cell contents, else None. COD's NiFe2O4 (5910064) gives origin-choice-1 coordinates under the
    origin-choice-2 symbol: its atoms make Ni16 Fe8 O8 per cell (the O 0.17 A from an 8b site),
    where the formula with Z 8 gives Ni8 Fe16 O32."""
    formula = _non_h(structure.cell_contents)
    atoms = _non_h(structure.model_formula_per_cell())
    if not formula or not atoms:
        return None
    off = [el for el in sorted(set(formula) | set(atoms))
           if abs(formula.get(el, 0.0) - atoms.get(el, 0.0))
           > max(COUNT_TOLERANCE, COUNT_TOLERANCE_SHARE * formula.get(el, 0.0))]
    if not off:
        return None
    said = (f"the atoms add up to {hill_formula(atoms)} (non-H) per cell, the formula and Z to "
            f"{hill_formula(formula)}: {', '.join(off)} differ")
    ratios = [atoms.get(el, 0.0) / formula[el] for el in formula]
    if set(atoms) == set(formula) and max(ratios) - min(ratios) < COUNT_TOLERANCE_SHARE * max(ratios):
        if structure.z:  # every element off by one factor: Z
            return f"{said} (Z {structure.z * sum(ratios) / len(ratios):.3g} instead of {structure.z:g}?)"
        return said
    return f"{said} (a wrong origin choice or setting, atoms missing, or a formula for another model)"
