"""Riding hydrogens: positions against SHELXL's, the AFIX round trip, OH towards its acceptor, and the
valence check that predicted counts go through."""
from __future__ import annotations

import numpy as np

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
    from aisolve.core.pipeline import _density_function
    from aisolve.core.refine import refine, set_refinement_flags
    st = read_ins(REFERENCE)
    heavy, xs = _heavy_xs(st)
    uc, ops = st.unit_cell, st.space_group.all_ops()
    data = prepare(load_reflections(EXAMPLE / "sucrose.hkl"), st.symmetry, st.cell_contents)
    set_refinement_flags(xs, aniso=True)
    result = refine(xs, data.fo_sq, 3)
    groups = {g.pivot: g for g in place_hydrogens(xs, st.temperature,
                                                  _density_function(xs, data, result.figures.scale))}
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
