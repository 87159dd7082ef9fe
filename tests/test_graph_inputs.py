"""Network inputs from peak graphs: context nodes are exactly the symmetry copies within 3.2 A."""
from __future__ import annotations

import itertools

import numpy as np

from aisolve.core.shelx_ins import read_ins
from aisolve.models.graph_inputs import CONTEXT_RADIUS, build_input, contents_tokens
from conftest import EXAMPLE


def test_context_nodes_are_all_and_only_near_copies():
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    heavy = [a for a in st.atoms if a.element != "H"]
    frac = np.array([a.xyz for a in heavy])
    g = build_input(frac, np.ones(len(heavy)), st.cell, st.space_group.type().hall_symbol())
    assert g.n_asu == 23 and np.array_equal(g.source[:23], np.arange(23))
    orth = np.array(st.unit_cell.orthogonalization_matrix()).reshape(3, 3)
    base = frac @ orth.T
    # brute force: every copy over all operators and a wide range of cells
    expected = []
    for op in st.space_group.all_ops():
        for shift in itertools.product(range(-2, 3), repeat=3):
            for i, x in enumerate(frac):
                c = (np.array(op * tuple(x)) + shift) @ orth.T
                d = np.linalg.norm(base - c, axis=1).min()
                if 1e-3 < d < CONTEXT_RADIUS:
                    expected.append((i, tuple(np.round(c, 3))))
    got = sorted((int(s), tuple(np.round(p, 3))) for s, p in zip(g.source[23:], g.pos[23:].astype(float)))
    assert got == sorted(expected)
    assert len(got) > 0 and np.allclose(g.height, 1.0)


def test_tokens_follow_their_source_peak():
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    heavy = [a for a in st.atoms if a.element != "H"]
    tokens = np.array([6 if a.element == "C" else 8 for a in heavy])
    g = build_input(np.array([a.xyz for a in heavy]), np.arange(1, 24, dtype=float), st.cell,
                    st.space_group.type().hall_symbol(), tokens)
    assert np.array_equal(g.token, tokens[g.source])
    assert contents_tokens(st.cell_contents) == [6, 8]


def test_too_many_nodes_is_an_error_not_a_silent_cap():
    import pytest
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    frac = np.array([a.xyz for a in st.atoms if a.element != "H"])
    with pytest.raises(ValueError, match="max_nodes=30"):
        build_input(frac, np.ones(len(frac)), st.cell, st.space_group.type().hall_symbol(), max_nodes=30)


def test_thinning_noise_peaks_equals_building_the_graph_without_them():
    from aisolve.models.data.labelling import PeakGraph
    from aisolve.models.element_data import radius_edge_array, thin_non_atoms, to_example
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    heavy = [a for a in st.atoms if a.element != "H"]
    rng = np.random.default_rng(4)
    atoms = np.array([a.xyz for a in heavy])
    noise = rng.random((9, 3))
    label = np.array([6 if a.element == "C" else 8 for a in heavy] + [0] * 9)
    hall = st.space_group.type().hall_symbol()

    def graph(xyz, lab):
        height = 1.0 + np.arange(len(xyz), dtype=float)
        return PeakGraph(st.cell, hall, {"C": 24, "O": 22}, xyz, height, lab, np.zeros(len(xyz)))

    full = to_example(graph(np.concatenate([atoms, noise]), label), 3.2)
    thinned = thin_non_atoms(full, 1.0, rng)
    direct = to_example(graph(atoms, label[:23]), 3.2)
    # the same nodes in the same order, with the heights renormalised to the remaining peaks
    assert thinned.n_asu == 23 and np.array_equal(thinned.label, direct.label)
    assert np.array_equal(thinned.source, direct.source)
    assert np.allclose(thinned.pos, direct.pos)
    assert np.allclose(thinned.height, direct.height)
    edges = lambda e: sorted(map(tuple, e.T.tolist()))  # noqa: E731
    assert edges(thinned.edges) == edges(direct.edges) == edges(radius_edge_array(direct.pos, 3.2))
    # dropping nothing leaves the graph as it was
    assert thin_non_atoms(full, 0.0, rng) is full
