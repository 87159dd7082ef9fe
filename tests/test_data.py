"""Training-data generator: labels, determinism, splits, packing, phaser samples."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from cctbx import crystal, miller, xray
from cctbx import euclidean_model_matching as emma
from cctbx.array_family import flex

from aisolve.core.outputs import hydrogen_counts
from aisolve.core.shelx_ins import read_ins
from aisolve.models.data.generate import GenConfig, generate, split_of
from aisolve.models.data.labelling import MATCH, align_by_correlation, label_graph
from aisolve.models.data.molecules import embed, nci_smiles
from aisolve.models.data.packing import pack
from aisolve.models.data.phaser_samples import GRID_SHAPE, PhaserSampler, grid_indices
from aisolve.models.data.shards import read_shard
from aisolve.models.data.simulate import SimConfig, simulate
from conftest import EXAMPLE


def _min_distance(model, site, i_atom) -> float:
    """Brute force over all symmetry operators and neighbouring cells (independent of cctbx pairs)."""
    uc = model.unit_cell
    best = 1e9
    for op in model.space_group.all_ops():
        s = np.array(op * model.atoms[i_atom].xyz)
        for shift in itertools.product((-1, 0, 1), repeat=3):
            d = np.array(site) - (s + shift)
            d -= np.round(d)
            best = min(best, uc.length(tuple(d)))
    return best


def _emma_aligned(sites, model, heavy):
    """Sites moved onto the model by emma's search over the allowed origins and hands: a reference
    independent of the labeller's structure-factor correlation."""
    sps = model.symmetry.special_position_settings(min_distance_sym_equiv=0.5)
    ref = emma.model(sps, [emma.position(str(k), model.atoms[i].xyz) for k, i in enumerate(heavy)])
    sol = emma.model(sps, [emma.position(str(k), tuple(s)) for k, s in enumerate(sites)])
    matches = emma.model_matches(ref, sol, tolerance=MATCH, models_are_diffraction_index_equivalent=False)
    best = max(matches.refined_matches, key=lambda m: (len(m.pairs), -m.rms))
    r = np.array(best.rt.r.elems, dtype=float).reshape(3, 3)
    return sites @ r.T + np.array(best.rt.t.elems, dtype=float)


def test_labels_on_hand_checked_structure():
    model = read_ins(EXAMPLE / "reference" / "sucrose.res")
    model.peaks = []
    refl = simulate(model, np.random.default_rng(4), SimConfig(d_min=(0.8, 0.8), cu_fraction=0.0)).reflections
    # one charge-flipping trial per call, as in generation: about one seed in four gives a phased map
    graph = next(g for g in (label_graph(model, refl, seed=s) for s in range(20)) if g is not None)
    heavy = [i for i, a in enumerate(model.atoms) if a.element != "H"]
    # H counts of the source model from its AFIX groups (not from distances, as the labeller does)
    afix_h = dict(zip(heavy, hydrogen_counts(model.atoms)))
    aligned = _emma_aligned(graph.xyz.astype(float), model, heavy)
    n_atoms = 0
    for site, label, n_h in zip(aligned, graph.label, graph.h_count):
        dists = [(_min_distance(model, site, i), i) for i in heavy]
        d, i = min(dists)
        if d <= 0.5:
            n_atoms += 1
            assert label == {"C": 6, "O": 8}[model.atoms[i].element]
            assert n_h == afix_h[i]
        elif d > 0.55:
            assert label == 0 and n_h == -1
    assert n_atoms >= 20  # nearly every one of sucrose's 23 non-H atoms has its peak


@pytest.mark.parametrize("hand", [1, -1])
def test_alignment_finds_origin_shift_and_hand(hand):
    """A 'solution' that is sucrose (P2_1) inverted or not and moved by an allowed origin shift
    (any y: the polar axis) comes back onto the model's atoms."""
    model = read_ins(EXAMPLE / "reference" / "sucrose.res")
    model.peaks = []
    heavy = [i for i, a in enumerate(model.atoms) if a.element != "H"]
    shift = np.array([0.5, 0.3712, 0.0])
    true_sites = np.array([model.atoms[i].xyz for i in heavy])
    moved = hand * true_sites + shift
    xs = model.to_xray(include_hydrogens=False)
    xs.set_sites_frac(flex.vec3_double([tuple(hand * np.array(sc.site) + shift) for sc in xs.scatterers()]))
    f_solution = xs.structure_factors(d_min=0.9).f_calc()
    aligned = align_by_correlation(moved, f_solution, model)
    for site, i in zip(aligned, heavy):
        assert _min_distance(model, site, i) < 0.05


def test_same_seed_same_output_whatever_the_workers(tmp_path):
    cfg = GenConfig(n=4, seed=7, shard_size=2)
    generate(cfg, tmp_path / "a", jobs=1)
    generate(cfg, tmp_path / "b", jobs=2)
    a = [g for f in sorted((tmp_path / "a").glob("shard_*.npz")) for g in read_shard(f)]
    b = [g for f in sorted((tmp_path / "b").glob("shard_*.npz")) for g in read_shard(f)]
    assert len(a) == len(b) >= 2  # a sample whose crystals all fail is skipped, identically
    for x, y in zip(a, b):
        assert np.array_equal(x.xyz, y.xyz) and np.array_equal(x.label, y.label)
        assert {k: v for k, v in x.meta.items() if k != "seconds"} == \
            {k: v for k, v in y.meta.items() if k != "seconds"}
    assert (tmp_path / "a" / "manifest.json").exists() and (tmp_path / "a" / "stats.md").exists()


def test_no_compound_in_two_splits(tmp_path):
    generate(GenConfig(n=6, seed=3, split_seed=5), tmp_path, jobs=1)
    graphs = [g for f in sorted(tmp_path.glob("shard_*.npz")) for g in read_shard(f)]
    seen = {}
    for g in graphs:
        assert seen.setdefault(g.meta["compound"], g.meta["split"]) == g.meta["split"]
        assert split_of(g.meta["compound"], 5) == g.meta["split"]
    names = [split_of(f"cif:C{n}H{2 * n}O", 0) for n in range(2000)]
    shares = {s: names.count(s) / len(names) for s in ("train", "val", "test")}
    assert 0.85 < shares["train"] < 0.95 and shares["val"] > 0.02 and shares["test"] > 0.02


def test_packing_is_dense_and_clash_free():
    rng = np.random.default_rng(2)
    mol = next(m for m in (embed(s, 1) for s in nci_smiles()[:50]) if m is not None and m.n_heavy >= 8)
    st = None
    for sg in ("P 1 21/c 1", "P -1", "P 21 21 21"):
        st = pack([(mol.elements, mol.xyz)], sg, rng)
        if st is not None:
            break
    assert st is not None
    per_atom = st.unit_cell.volume() / (mol.n_heavy * st.space_group.order_z())
    assert 14 < per_atom <= 24
    xs = st.to_xray()
    # every contact under 1.7 A is a covalent bond inside the molecule, the same as in the conformer
    n_mol = len(mol.elements)
    conformer_bonds = {(i, j) for i in range(n_mol) for j in range(i + 1, n_mol)
                       if np.linalg.norm(mol.xyz[i] - mol.xyz[j]) < 1.7}
    table = crystal.pair_asu_table(xs.asu_mappings(buffer_thickness=1.7))
    table.add_all_pairs(distance_cutoff=1.7)
    for i, row in enumerate(table.extract_pair_sym_table()):
        for j, ops in row.items():
            for op in ops:
                # the same molecule, possibly one cell over: a bond, never a contact between copies
                same_copy = op.r().is_unit_mx() and all(abs(t - round(t)) < 1e-9 for t in op.t().as_double())
                assert same_copy and (min(i, j), max(i, j)) in conformer_bonds


def test_phaser_samples_match_cctbx_and_mask_absences():
    frags = [(m.elements, m.xyz) for m in (embed(s, 1, max_heavy=14) for s in nci_smiles()[:30]) if m]
    sampler = PhaserSampler(frags, seed=1)
    assert len(grid_indices()) == 1205
    cell, frac, elements, u = sampler.random_structure()
    assert max(cell[:3]) <= 10.0
    f, _ = sampler.structure_factors(cell, frac, elements, u)
    sym = crystal.symmetry(unit_cell=cell, space_group_symbol="P 1 21/c 1")
    xs = xray.structure(crystal_symmetry=sym)
    for el, site in zip(elements, frac):
        xs.add_scatterer(xray.scatterer(label=el, site=tuple(site), u=u, scattering_type=el))
    ms = miller.set(sym, flex.miller_index([tuple(map(int, h)) for h in sampler.hkl]), anomalous_flag=False)
    ref = np.array([z.real for z in ms.structure_factors_from_scatterers(xs, algorithm="direct").f_calc().data()])
    assert np.abs(ref - f).max() < 1e-3 * np.abs(ref).max()
    sample = sampler.sample()
    assert sample.amplitudes.shape == GRID_SHAPE and sample.amplitudes.max() == pytest.approx(1.0)
    h0l_odd = sampler.hkl[(sampler.hkl[:, 1] == 0) & (sampler.hkl[:, 2] % 2 == 1)]
    for h, k, l in h0l_odd:
        assert not sample.mask[h + 10, k, l] and sample.amplitudes[h + 10, k, l] == 0
