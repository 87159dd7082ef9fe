"""Riding hydrogens: positions against SHELXL's, the AFIX round trip, OH towards its acceptor, and the
valence check that predicted counts go through."""
from __future__ import annotations

import numpy as np
import pytest

from aisolve.core.evaluate import h_counts_by_distance
from aisolve.core.hydrogens import checked_counts, place_hydrogens
from aisolve.core.shelx_ins import read_ins, read_ins_text
from aisolve.core.shelx_write import write_ins_text
from conftest import EXAMPLE

REFERENCE = EXAMPLE / "reference" / "sucrose.res"


def _heavy_xs(st):
    heavy = [a for a in st.atoms if a.element != "H"]
    bare = type(st)(cell=st.cell, space_group=st.space_group, atoms=heavy)
    return heavy, bare.to_xray(include_hydrogens=False)


def test_riding_h_sit_where_shelxl_put_them():
    """The reference was refined by SHELXL with riding H: for the groups whose geometry is fixed by
    the pivot's neighbours (AFIX 13 and 23), ours must be within 0.05 A of SHELXL's."""
    st = read_ins(REFERENCE)
    heavy, xs = _heavy_xs(st)
    uc = st.unit_cell
    groups = {g.pivot: g for g in place_hydrogens(xs, st.temperature)}
    checked = 0
    pivot = None
    for a in st.atoms:
        if a.element != "H":
            pivot = heavy.index(a)
            continue
        if a.afix not in (13, 23):
            continue
        g = groups[pivot]
        assert g.afix == a.afix, (a.label, g.afix)
        d = min(uc.distance(a.xyz, s) for s in g.sites_frac)
        assert d < 0.05, (a.label, d)
        checked += 1
    assert checked == 8 + 2 * 3


def test_afix_groups_survive_a_res_round_trip():
    st = read_ins(REFERENCE)
    again = read_ins_text(write_ins_text(st), "round trip")
    h1 = [(a.label, a.afix, a.riding_u) for a in st.atoms if a.element == "H"]
    h2 = [(a.label, a.afix, a.riding_u) for a in again.atoms if a.element == "H"]
    assert h1 == h2 and len(h1) == 22
    for a, b in zip(st.atoms, again.atoms):
        assert np.allclose(a.xyz, b.xyz, atol=1e-5), a.label


def test_hydroxyl_h_points_at_its_acceptor():
    """Sucrose's eight OH groups each donate a hydrogen bond. With the acceptors in reach and the
    difference density of the data, every OH hydrogen lies on a hydrogen bond (H...O <= 2.3 A) and
    next to the H that SHELXL refined against the data (so, at the same acceptor)."""
    from aisolve.core.data_prep import prepare
    from aisolve.core.loaders import load_reflections
    from aisolve.core.pipeline import difference_density
    from aisolve.core.refine import refine, set_refinement_flags
    st = read_ins(REFERENCE)
    heavy, xs = _heavy_xs(st)
    uc, ops = st.unit_cell, st.space_group.all_ops()
    data = prepare(load_reflections(EXAMPLE / "sucrose.hkl"), st.symmetry, st.cell_contents)
    set_refinement_flags(xs, aniso=True)
    result = refine(xs, data.fo_sq, 3)
    groups = {g.pivot: g for g in place_hydrogens(xs, st.temperature,
                                                  difference_density(xs, data, result.figures.scale))}
    oxygens = [b for b in heavy if b.element == "O"]
    n = 0
    for i, a in enumerate(st.atoms):
        if a.element != "H" or a.afix != 147:
            continue
        g = groups[heavy.index(st.atoms[i - 1])]
        assert g.afix == 147
        h = g.sites_frac[0]
        h_acceptor = min(uc.mod_short_distance(h, op * b.xyz) for b in oxygens if b is not st.atoms[i - 1]
                         for op in ops)
        assert h_acceptor <= 2.3, (a.label, h_acceptor)
        assert uc.distance(h, a.xyz) < 0.4, (a.label, uc.distance(h, a.xyz))
        n += 1
    assert n == 8


def test_predicted_counts_beyond_valence_are_reported_and_replaced():
    st = read_ins(REFERENCE)
    heavy, xs = _heavy_xs(st)
    geometric = {g.pivot: len(g.sites_frac) for g in place_hydrogens(xs, st.temperature)}
    counts = [geometric.get(i, 0) for i in range(len(heavy))]
    quaternary = next(i for i in range(len(heavy)) if heavy[i].element == "C" and i not in geometric)
    ring_o = next(i for i in range(len(heavy)) if heavy[i].element == "O" and i not in geometric)
    counts[quaternary], counts[ring_o] = 2, 2  # impossible: 4 and 2 heavy neighbours already
    fixed, conflicts = checked_counts(xs, counts)
    assert fixed == [geometric.get(i, 0) for i in range(len(heavy))]
    assert len(conflicts) == 2 and "exceed its valence" in conflicts[0]


def _p1(sites_cart: dict[str, tuple[str, tuple[float, float, float]]]):
    """A P1 structure in a 20 A cube from Cartesian sites {label: (element, xyz)}."""
    from cctbx import crystal, xray
    sym = crystal.symmetry((20, 20, 20, 90, 90, 90), "P 1")
    xs = xray.structure(crystal_symmetry=sym)
    for label, (el, xyz) in sites_cart.items():
        xs.add_scatterer(xray.scatterer(label=label, site=tuple(np.array(xyz) / 20.0), u=0.02, scattering_type=el))
    return xs


def _direction(deg: float) -> np.ndarray:
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg)), 0.0])


def test_water_h_point_at_two_acceptors():
    """A water between two carbonyl O acceptors (O...O 2.8 A, 106 deg apart): AFIX 3, two H at
    0.82 A and 104.5 deg, each on the line to a different acceptor."""
    from aisolve.core.hydrogens import WATER
    ow = np.array([10.0, 10.0, 10.0])
    a1, a2 = ow + 2.8 * _direction(0), ow + 2.8 * _direction(106)
    xs = _p1({"OW": ("O", ow), "O1": ("O", a1), "C1": ("C", a1 + 1.22 * _direction(-30)),
              "O2": ("O", a2), "C2": ("C", a2 + 1.22 * _direction(136))})
    water = next(g for g in place_hydrogens(xs) if g.pivot == 0)
    assert water.afix == WATER and len(water.sites_frac) == 2
    h = [np.array(s) * 20.0 - ow for s in water.sites_frac]
    assert np.allclose([np.linalg.norm(v) for v in h], 0.82)
    cos = np.dot(h[0], h[1]) / 0.82 ** 2
    assert abs(np.degrees(np.arccos(cos)) - 104.5) < 0.1
    to_acceptor = sorted(min(np.degrees(np.arccos(np.clip(np.dot(v, a - ow) / (0.82 * 2.8), -1, 1))) for v in h)
                         for a in (a1, a2))
    assert to_acceptor[1] < 5.0  # both acceptors have an H (nearly) on their line


def test_aqua_ligand_h_point_away_from_the_metal():
    """O 2.08 A from Mg and nothing else: two H, every Mg-O-H angle >= 100 deg. At 1.90 A the same O
    is a hydroxide (AFIX 147); on two metals, or with no neighbour at all, it is (aqua) water."""
    from aisolve.core.hydrogens import WATER, afix_for
    ow = np.array([10.0, 10.0, 10.0])
    mg = ow + 2.08 * _direction(0)
    xs = _p1({"OW": ("O", ow), "MG": ("Mg", mg)})
    water = next(g for g in place_hydrogens(xs) if g.pivot == 0)
    assert water.afix == WATER
    for s in water.sites_frac:
        v = np.array(s) * 20.0 - ow
        assert np.degrees(np.arccos(np.dot(v, mg - ow) / (np.linalg.norm(v) * 2.08))) >= 100.0
    assert afix_for("O", ow, [("Mg", ow + 1.90 * _direction(0))]) == 147
    assert afix_for("O", ow, []) == WATER
    assert afix_for("O", ow, [("Mg", mg), ("Mg", ow + 2.1 * _direction(120))]) == 0
    # an alcohol that coordinates a metal keeps its one H
    assert afix_for("O", ow, [("C", ow + 1.43 * _direction(180)), ("Ca", ow + 2.45 * _direction(60))]) == 147


def _placed_on_published(entry: str):
    """A real entry's published non-H atoms, refined briefly against its data, and the H groups
    placed on them with the difference density (skips when the shared data are absent)."""
    import pytest

    from aisolve.core.data_prep import prepare
    from aisolve.core.loaders import data_hklf, load_reflections
    from aisolve.core.pipeline import difference_density
    from aisolve.core.refine import refine, set_refinement_flags
    from conftest import REAL
    if REAL is None or not (REAL / entry).is_dir():
        pytest.skip("shared real data absent")
    st = read_ins(REAL / entry / f"{entry}.res")
    heavy, xs = _heavy_xs(st)
    data = prepare(load_reflections(REAL / entry / f"{entry}.hkl", data_hklf(st)), st.symmetry, st.cell_contents)
    set_refinement_flags(xs, aniso=True)
    result = refine(xs, data.fo_sq, 3)
    return st, heavy, place_hydrogens(xs, st.temperature, difference_density(xs, data, result.figures.scale))


def test_water_h_of_a_real_structure_sit_on_difference_density():
    """olex2-gui__timmy_timmy (real data, two lattice waters and two Ca aqua ligands): placed on the
    published heavy atoms with the difference density of the data, every water O gets two H, each
    within 0.55 A of a published H."""
    from aisolve.core.hydrogens import WATER
    st, heavy, groups = _placed_on_published("olex2-gui__timmy_timmy")
    waters = [g for g in groups if g.afix == WATER]
    assert sorted(heavy[g.pivot].label for g in waters) == ["O1L", "O1W", "O2L", "O2W"]
    published = [a.xyz for a in st.atoms if a.element == "H"]
    uc, ops = st.unit_cell, st.space_group.all_ops()
    for g in waters:
        assert len(g.sites_frac) == 2
        for h in g.sites_frac:
            assert min(uc.mod_short_distance(h, op * p) for p in published for op in ops) < 0.55, heavy[g.pivot].label


def test_difference_density_settles_the_n_h_that_bond_lengths_leave_in_doubt():
    """olex2-gui__ZP2: two pyrazoles whose N-N and N-C bonds are all 1.35-1.36 A; the geometry
    rules alone give neither ring an N-H. The density puts one on N11 and N21 (as published) and
    none on N12 and N22."""
    _st, heavy, groups = _placed_on_published("olex2-gui__ZP2")
    n_h = {heavy[g.pivot].label: len(g.sites_frac) for g in groups if heavy[g.pivot].element == "N"}
    assert n_h.get("N11") == n_h.get("N21") == 1
    assert "N12" not in n_h and "N22" not in n_h


def test_reference_h_count_gives_a_shared_hydrogen_to_its_nearest_atom():
    """Hydrogen maleate's O-H...O: the H is within 1.25 A of both oxygens but rides on one (the
    nearer); a water O two H atoms 0.96 A away keeps both."""
    from cctbx import sgtbx

    from aisolve.core.model import Atom, Structure
    a = 12.0
    cart = {"O1": (1.0, 1.0, 1.0), "O2": (3.42, 1.0, 1.0), "H1": (2.19, 1.0, 1.0),
            "O3": (6.0, 6.0, 6.0), "H2": (6.96, 6.0, 6.0), "H3": (5.76, 6.93, 6.0)}
    atoms = [Atom(label=k, element=k[0], xyz=tuple(v / a for v in xyz), uiso=0.03) for k, xyz in cart.items()]
    st = Structure(cell=(a, a, a, 90, 90, 90), space_group=sgtbx.space_group_info("P1").group(), title="t",
                   atoms=atoms)
    counts = dict(zip(cart, h_counts_by_distance(st)))
    assert (counts["O1"], counts["O2"], counts["O3"]) == (1, 0, 2)


def test_predicted_h_on_an_atom_without_bonds_is_replaced_and_placing_does_not_fail():
    """A lone C (no heavy neighbour) predicted CH3: a riding group needs a bond to turn about, so the
    geometry rules' count is used and reported; a lone O predicted water keeps its two H."""
    xs = _p1({"C1": ("C", (5.0, 5.0, 5.0)), "O1": ("O", (12.0, 12.0, 12.0)),
              "C2": ("C", (2.0, 15.0, 3.0)), "C3": ("C", (3.5, 15.0, 3.0))})
    fixed, conflicts = checked_counts(xs, [3, 2, 3, 3])
    assert fixed[0] == 0 and fixed[1] == 2 and fixed[2:] == [3, 3]
    assert len(conflicts) == 1 and "no heavy-atom bond" in conflicts[0] and "atom 1 " in conflicts[0]
    groups = place_hydrogens(xs, None, None, fixed)
    assert sorted(len(g.sites_frac) for g in groups) == [2, 3, 3]


def _on_mirror(h_sites, h_occupancy=1.0, y=0.0):
    """P m (mirror y = 0): an N on the mirror bonded to a C on it (both at `y` off it), with the given H sites."""
    from cctbx import sgtbx
    from aisolve.core.model import Atom, Structure
    atoms = [Atom("N1", "N", (0.30, y, 0.30), uiso=0.03), Atom("C1", "C", (0.10, y, 0.15), uiso=0.03)]
    atoms += [Atom(f"H{k}", "H", tuple(x), occupancy=h_occupancy, uiso=0.04) for k, x in enumerate(h_sites)]
    return Structure(cell=(7.0, 6.0, 8.0, 90, 90, 90), space_group=sgtbx.space_group_info("P m").group(),
                     atoms=atoms)


# three tetrahedral H about the C-N axis: one on the mirror, or all three off it
ORDERED_NH3 = [(0.331, 0.0, 0.418), (0.375, 0.140, 0.262), (0.375, -0.140, 0.262)]
DISORDERED_NH3 = [(0.343, 0.075, 0.408), (0.343, 0.078, 0.232), (0.402, -0.135, 0.307)]


def test_a_group_on_a_mirror_gets_the_occupancies_of_its_own_h_count():
    from aisolve.core.hydrogens import HydrogenGroup, _symmetry_occupancies
    for sites, expected in ((ORDERED_NH3, [1.0, 0.5, 0.5]), (DISORDERED_NH3, [0.5, 0.5, 0.5])):
        xs = _on_mirror([]).to_xray(include_hydrogens=False)
        group = HydrogenGroup(0, 137, sites, 0.89, 1.5)
        assert _symmetry_occupancies(xs, group) == pytest.approx(expected)
    # the same group on an atom in a general position keeps full H
    xs = _on_mirror([], y=0.21).to_xray(include_hydrogens=False)
    assert _symmetry_occupancies(xs, HydrogenGroup(0, 137, DISORDERED_NH3, 0.89, 1.5)) == [1.0, 1.0, 1.0]


def test_reference_count_of_an_nh3_disordered_over_a_mirror_is_three():
    # six half-occupied H about the N (three listed, three mirror images): three H, not six
    assert h_counts_by_distance(_on_mirror(DISORDERED_NH3, 0.5))[0] == 3
    # ordered on the mirror: the listed H on the mirror once, the pair as each other's images
    assert h_counts_by_distance(_on_mirror(ORDERED_NH3[:2]))[0] == 3
