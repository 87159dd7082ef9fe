"""The search over Wyckoff positions for structures of a few atoms, alone and inside solve()."""
from __future__ import annotations

import copy

import pytest
from cctbx import sgtbx

from aisolve.core.data_prep import prepare
from aisolve.core.evaluate import evaluate
from aisolve.core.model import Atom, Structure
from aisolve.core.phasing import ChargeFlippingPhaser
from aisolve.core.pipeline import SolveOptions, solve
from aisolve.core.wyckoff_search import (arrangements, integer_counts, polar_axes, positions, refined_candidates,
                                         site_probabilities)
from simulate import simulate_intensities


def _model(space_group: str, cell, atoms, contents) -> Structure:
    return Structure(cell=cell, space_group=sgtbx.space_group_info(space_group).group(), cell_contents=contents,
                     atoms=[Atom(label=f"{el}{k + 1}", element=el, xyz=xyz, uiso=0.01)
                            for k, (el, xyz) in enumerate(atoms)])


# Matlockite: Pb and Cl on 2c (0, 1/2, z), F on 2a; two free coordinates.
MATLOCKITE = _model("P 4/n m m :1", (4.11, 4.11, 7.23, 90, 90, 90),
                    [("Pb", (0.0, 0.5, 0.205)), ("F", (0.0, 0.0, 0.0)), ("Cl", (0.0, 0.5, 0.65))],
                    {"Pb": 2, "F": 2, "Cl": 2})
# 4H-CdI2: Cd and I1 on 2b (1/3, 2/3, z), I2 on 2a; Cd and I differ by five electrons.
CDI2 = _model("P 63 m c", (4.24, 4.24, 13.67, 90, 90, 120),
              [("Cd", (1 / 3, 2 / 3, 0.0)), ("I", (1 / 3, 2 / 3, 0.375)), ("I", (0.0, 0.0, 0.625))],
              {"Cd": 2, "I": 4})
ZINC = _model("P 63/m m c", (2.66, 2.66, 4.95, 90, 90, 120), [("Zn", (1 / 3, 2 / 3, 0.25))], {"Zn": 2})


def _template(model: Structure) -> Structure:
    template = copy.deepcopy(model)
    template.atoms = []
    return template


def test_counts_must_be_whole_per_cell():
    assert integer_counts({"C": 12.0, "H": 22.5, "O": 11.0}) == {"C": 12, "O": 11}
    assert integer_counts({"Fe": 2.5, "O": 4.0}) is None


def test_arrangements_put_the_counts_on_wyckoff_positions():
    """Au3Cu in Pm-3m: Au on 3c or 3d, Cu on 1a or 1b, nothing else adds up to 3 + 1."""
    sym = _model("P m -3 m", (3.75,) * 3 + (90,) * 3, [], {}).symmetry
    table = positions(sym)
    found = {tuple(sorted((el, table[i].letter) for el, i in arr))
             for arr in arrangements({"Au": 3, "Cu": 1}, table)}
    assert found == {(("Au", a), ("Cu", b)) for a in "cd" for b in "ab"}


def test_a_polar_axis_fixes_one_free_coordinate():
    """4H-CdI2 in P6_3mc: Cd on 2a or 2b and two I sites, each with a free z: three coordinates,
    one of which only fixes the origin along c."""
    sym = _model("P 63 m c", (4.24, 4.24, 13.67, 90, 90, 120), [], {}).symmetry
    table = positions(sym)
    assert polar_axes(sym) == [2] and polar_axes(MATLOCKITE.symmetry) == []
    assert arrangements({"Cd": 2, "I": 4}, table) == []
    assert len(arrangements({"Cd": 2, "I": 4}, table, polar=[2])) == 6


def test_the_search_finds_matlockite_and_ranks_the_alternatives():
    refl = simulate_intensities(MATLOCKITE, d_min=0.8, noise=0.02)
    data = prepare(refl, MATLOCKITE.symmetry, MATLOCKITE.cell_contents)
    ranked = refined_candidates(MATLOCKITE.symmetry, {"Pb": 2, "F": 2, "Cl": 2}, data.f_obs, data.fo_sq,
                                data.wilson_b, 0.01)
    best = ranked[0]
    assert best.r1 < 0.05 and ranked[1].r1 > best.r1 + 0.03
    model = copy.deepcopy(MATLOCKITE)
    model.atoms = [Atom(label=f"X{k}", element=sc.scattering_type, xyz=tuple(sc.site))
                   for k, sc in enumerate(best.xs.scatterers())]
    assert evaluate(model, MATLOCKITE).all_correct
    probs = site_probabilities(ranked)
    assert [max(p, key=p.get) for p in probs] == [sc.scattering_type for sc in best.xs.scatterers()]
    assert all(0.5 < max(p.values()) <= 1.0 for p in probs)


def test_sites_of_equal_multiplicity_exchange_elements():
    """The grid barely tells Cd from I (on the simulated test-split 4H-CdI2 its best point had them
    the wrong way round on the two b sites): each candidate's swap is refined too, so the right one
    ranks first whichever way the grid chose, the swap next, and the doubt shows in the
    probabilities."""
    refl = simulate_intensities(CDI2, d_min=0.8, noise=0.02)
    data = prepare(refl, CDI2.symmetry, CDI2.cell_contents)
    ranked = refined_candidates(CDI2.symmetry, {"Cd": 2, "I": 4}, data.f_obs, data.fo_sq, data.wilson_b, 0.01)
    model = copy.deepcopy(CDI2)
    model.atoms = [Atom(label=f"X{k}", element=sc.scattering_type, xyz=tuple(sc.site))
                   for k, sc in enumerate(ranked[0].xs.scatterers())]
    assert evaluate(model, CDI2).all_correct, [o.candidate for o in ranked[:2]]
    swapped = ranked[1]
    assert swapped.candidate.sites == ranked[0].candidate.sites and swapped.r1 > ranked[0].r1
    assert sorted(max(p.values()) for p in site_probabilities(ranked))[0] < 1.0


@pytest.mark.parametrize("model", [MATLOCKITE, ZINC], ids=["matlockite", "zinc"])
def test_solve_falls_back_on_the_search(model):
    """Charge flipping alone finds no solution for hcp zinc and swaps Cl and F in matlockite (R1 0.07)
    on these data; the search over Wyckoff positions solves both. An explicit phaser runs one round
    only: the default's later rounds (dual space) solve zinc on some runs, which would leave the
    search untested."""
    refl = simulate_intensities(model, d_min=0.8, noise=0.02)

    def options(**kw):
        return SolveOptions(phaser=ChargeFlippingPhaser(seed=0), hydrogens="none", phasing_time=10, **kw)

    classical = solve(_template(model), refl, options(wyckoff_search=False))
    assert not (classical.solved and evaluate(classical.structure, model).all_correct)
    result = solve(_template(model), refl, options())
    assert result.solved and result.figures.r1 < 0.03, result.warnings
    assert result.phasing.route == "Wyckoff-position search"
    assert "search over Wyckoff positions" in result.warnings[0]
    assert evaluate(result.structure, model).all_correct
    for atom in result.structure.non_h_atoms():
        assert 0.5 < atom.confidence <= 1.0 and atom.element in atom.element_probabilities
