"""Cell contents as the pipeline uses them: site-sharing elements (mixed occupancy) and the number
of sites to look for."""
from __future__ import annotations

import pytest
from cctbx import sgtbx

from aisolve.core.contents import contents_in_use, majority_contents, site_sharing
from aisolve.core.evaluate import evaluate
from aisolve.core.model import Atom, Structure
from aisolve.core.pipeline import SolveOptions, expected_atom_count, solve
from aisolve.core.typing_baseline import expected_site_count
from simulate import simulate_intensities

PBCN = sgtbx.space_group_info("P b c n").group()
# Columbite (Fe,Mn)(Nb,Ta)2O6 as cod 9003733 gives it: metals on two mixed sites (A on 4c, B general)
COLUMBITE_CONTENTS = {"Fe": 3.164, "Mn": 0.836, "Nb": 7.596, "Ta": 0.404, "O": 24.0}


def _columbite() -> Structure:
    mixed = [("A", (0.0, 0.3293, 0.25), {"Fe": 0.625, "Nb": 0.207, "Mn": 0.165, "Ta": 0.003}),
             ("B", (0.1628, 0.1772, 0.7478), {"Nb": 0.846, "Fe": 0.083, "Ta": 0.049, "Mn": 0.022})]
    atoms = [Atom(label=f"{el}{site}", element=el, xyz=xyz, occupancy=occ, uiso=0.008)
             for site, xyz, shares in mixed for el, occ in shares.items()]
    atoms += [Atom(label=f"O{k + 1}", element="O", xyz=xyz, uiso=0.01)
              for k, xyz in enumerate([(0.095, 0.1063, 0.0721), (0.4199, 0.1168, 0.0944), (0.7562, 0.1219, 0.0828)])]
    return Structure(cell=(14.2445, 5.7265, 5.0789, 90, 90, 90), space_group=PBCN,
                     cell_contents=dict(COLUMBITE_CONTENTS), atoms=atoms)


def test_fractional_counts_share_sites():
    assert site_sharing(COLUMBITE_CONTENTS) == ["Fe", "Mn", "Nb", "Ta"]
    assert site_sharing({"C": 8.0, "H": 9.5, "O": 2.0}) == []  # H is never counted


def test_site_sharing_elements_are_counted_together():
    """Five sites in columbite's asymmetric unit (A on 4c counts whole), not one per metal (7)."""
    assert expected_site_count(COLUMBITE_CONTENTS, 8) == 5
    # whole counts keep one site per element, special positions included: urea in P-42_1m has 3
    assert expected_site_count({"C": 2, "N": 4, "O": 2, "H": 8}, 8) == 3


def test_minor_site_sharers_are_counted_as_their_hosts():
    """Mn (0.10 per asymmetric unit) and Ta (0.05) cannot be the main occupant of a site of 4c
    (0.5): they are counted as Fe and Nb, the metals' total and the O kept."""
    contents, minor = majority_contents(COLUMBITE_CONTENTS, PBCN)
    assert minor == ["Mn", "Ta"]
    assert set(contents) == {"Fe", "Nb", "O"} and contents["O"] == 24.0
    assert contents["Fe"] + contents["Nb"] == pytest.approx(12.0)
    assert contents["Fe"] / contents["Nb"] == pytest.approx(3.164 / 7.596)
    in_use = contents_in_use(_columbite(), True)
    assert in_use.contents == contents and "Mn, Ta" in in_use.minor_note and "Fe, Nb" in in_use.minor_note


@pytest.mark.parametrize("contents", [{"C": 40.0, "O": 10.6, "H": 44.0}, {"Fe": 6.5, "Mn": 5.5, "O": 24.0}],
                         ids=["one fractional element", "sharers enough for sites of their own"])
def test_contents_without_minor_site_sharers_are_kept(contents):
    """A partly occupied solvent O has no other element to be counted as; Fe 6.5 and Mn 5.5 per
    cell can each be the main occupant of a site."""
    assert majority_contents(contents, PBCN) == (contents, [])
    assert contents_in_use(Structure(cell=(14.2, 5.7, 5.1, 90, 90, 90), space_group=PBCN, cell_contents=contents),
                           True).minor_note is None


@pytest.mark.parametrize("typer", ["baseline", "network"])
def test_a_mixed_site_structure_is_typed_by_the_main_occupants(typer):
    """Simulated columbite: the solver counts 5 sites, types site A Fe and site B Nb (their main
    occupants) and says that Mn and Ta were counted as them. With Mn and Ta in the counts both
    typers put Nb on A and Ta on B."""
    from aisolve.models.element_typer import NetworkTyper
    model = _columbite()
    refl = simulate_intensities(model, d_min=0.8, noise=0.02)
    template = Structure(cell=model.cell, space_group=PBCN, cell_contents=dict(COLUMBITE_CONTENTS))
    assert expected_atom_count(template, contents_in_use(template, True).contents) == 5
    options = SolveOptions(typer=NetworkTyper() if typer == "network" else None, hydrogens="none", phasing_time=10)
    result = solve(template, refl, options)
    assert result.solved and any("site-sharing Mn, Ta" in w for w in result.warnings), result.warnings
    ev = evaluate(result.structure, model)
    assert ev.all_correct and ev.n_extra == 0, ev.mismatches
