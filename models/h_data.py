"""Training examples for the hydrogen network: refined-model-like graphs of non-H atoms with H counts.

The H network looks at a refined model, not at density peaks, so its examples come straight from
known structures without phasing: the training CIFs (real chemistry, real ADPs, metals) and
RDKit molecules packed into the common space groups. Each example holds the non-H atoms of the
asymmetric unit with their symmetry context within 3.2 A (hydrogen-bond partners), element tokens,
Ueq relative to the structure's median, positions jittered by a refinement-sized error, and the H
count of every atom (0-4, from the H atoms bonded to it in the source). Splits are by compound, with
the same hash as the peak-graph generator, so the test compounds are the same.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.evaluate import h_counts_by_distance
from aisolve.core.model import Structure
from aisolve.models.element_data import Example, radius_edge_array
from aisolve.models.graph_inputs import CONTEXT_RADIUS, build_input

MAX_H = 4
N_H_CLASSES = MAX_H + 1
POSITION_JITTER = 0.01  # A, about a refined light atom's error


def ueq(atom, unit_cell) -> float | None:
    """Ueq of an atom (Uiso when isotropic; None when the file gives neither)."""
    if atom.uaniso is not None:
        from cctbx import adptbx
        return float(adptbx.u_cart_as_u_iso(adptbx.u_cif_as_u_cart(unit_cell, tuple(atom.uaniso))))
    return atom.uiso


def relative_ueq(values: list[float | None]) -> np.ndarray:
    """Ueq over the structure's median (1.0 where unknown): what the network reads as 'height'."""
    known = [v for v in values if v is not None and v > 0]
    median = float(np.median(known)) if known else None
    return np.array([v / median if (median and v is not None and v > 0) else 1.0 for v in values], dtype=float)


def model_example(xyz_frac: np.ndarray, elements: list[str], ueq_ratio: np.ndarray, cell, hall: str,
                  contents: dict, cutoff: float, h_counts: np.ndarray | None = None, meta: dict | None = None
                  ) -> Example:
    """One graph as the network sees it (also at inference, with h_counts None)."""
    tokens = np.array([ATOMIC_NUMBER[e] for e in elements], dtype=np.int64)
    gi = build_input(np.asarray(xyz_frac, dtype=float), np.asarray(ueq_ratio, dtype=float), tuple(cell), hall,
                     tokens=tokens)
    edges = radius_edge_array(gi.pos, cutoff)
    label = np.zeros(gi.n_asu, dtype=np.int64) if h_counts is None else np.clip(h_counts, 0, MAX_H).astype(np.int64)
    ex = Example(gi.pos, gi.height, gi.source.astype(np.int64), gi.n_asu, label, edges, dict(contents), meta or {})
    ex.meta["tokens"] = tokens
    return ex


def structure_example(st: Structure, rng: np.random.Generator, cutoff: float, meta: dict) -> Example | None:
    """The example of a known structure (H present in it), positions jittered."""
    counts = h_counts_by_distance(st)
    heavy = [i for i, a in enumerate(st.atoms) if a.element not in ("H", "D")]
    if not heavy or not any(a.element in ("H", "D") for a in st.atoms):
        return None
    uc = st.unit_cell
    orth = np.array(uc.orthogonalization_matrix()).reshape(3, 3)
    frac = np.array([st.atoms[i].xyz for i in heavy], dtype=float)
    cart = frac @ orth.T + rng.normal(0.0, POSITION_JITTER, size=(len(heavy), 3))
    frac = cart @ np.linalg.inv(orth).T
    ratio = relative_ueq([ueq(st.atoms[i], uc) for i in heavy])
    elements = [st.atoms[i].element for i in heavy]
    hall = st.space_group.type().hall_symbol()
    meta = dict(meta, cell=tuple(st.cell), hall=hall, xyz=frac, geometry_counts=geometry_counts(frac, elements, st))
    return model_example(frac, elements, ratio, st.cell, hall, st.cell_contents, cutoff,
                         np.array([counts[i] for i in heavy]), meta)


def geometry_counts(frac: np.ndarray, elements: list[str], st: Structure) -> np.ndarray:
    """The geometry rules' H count per atom (the baseline the network is measured against)."""
    from aisolve.core.geometry import structure_from_sites
    from aisolve.core.hydrogens import place_hydrogens
    xs = structure_from_sites(st.symmetry, [tuple(x) for x in frac], elements, 0.03)
    out = np.zeros(len(elements), dtype=np.int64)
    for g in place_hydrogens(xs):
        out[g.pivot] = len(g.sites_frac)
    return out


def _major_component(path) -> Structure | None:
    """A CIF's structure with disorder reduced to its major part (PART 0/1, occupancy >= 0.5), as
    the riding H of a refined model sit on it; None if the file holds no usable model."""
    from aisolve.core.cif_io import read_cif
    from aisolve.core.errors import InputError
    try:
        st = read_cif(path).structure
    except InputError:
        return None
    if st is None or not st.atoms:
        return None
    st.atoms = [a for a in st.atoms if a.occupancy >= 0.5 or a.part in (0, 1)]
    if not st.cell_contents or any(a.element not in st.cell_contents for a in st.atoms):
        st.cell_contents = st.model_formula_per_cell()
    return st


def source_structures(cif_dir: str | None, rng: np.random.Generator, wanted: Callable[[dict], bool] | None = None
                      ) -> Iterator[tuple[Structure | None, dict]]:
    """Known structures with H: every training CIF (None where unusable), then packed RDKit
    molecules without end; `wanted(meta)` skips a compound before any work on it. The caller may
    draw from `rng` between items: the order of draws makes the data set."""
    from aisolve.models.data.molecules import embed, nci_smiles
    from aisolve.models.data.packing import SPACE_GROUPS, pack
    from aisolve.models.data.real_sources import training_cifs
    for entry in training_cifs(cif_dir) if cif_dir else []:
        meta = {"compound": entry.compound_id, "source": "cif", "origin": entry.path.name}
        if wanted and not wanted(meta):
            continue
        try:
            st = _major_component(entry.path)
        except (AssertionError, RuntimeError, ValueError, ArithmeticError):
            st = None
        yield st, meta
    smiles = nci_smiles()
    groups = list(SPACE_GROUPS)
    weights = np.array([SPACE_GROUPS[g] for g in groups], dtype=float)
    while True:
        mol = embed(smiles[int(rng.integers(len(smiles)))], seed=int(rng.integers(1 << 30)))
        meta = {"compound": "smi:" + mol.scaffold, "source": "smiles", "origin": mol.smiles} if mol else {}
        if mol is None or (wanted and not wanted(meta)):
            continue
        group = str(rng.choice(groups, p=weights / weights.sum()))
        st = pack([(mol.elements, mol.xyz)], group, rng, title=mol.smiles[:60])
        if st is None:
            continue
        u = rng.uniform(0.01, 0.06)
        for a in st.atoms:  # packed molecules have no ADPs: one Uiso, terminal atoms a little higher
            a.uiso = u
        yield st, meta


def make_examples(cif_dir: str | None, n_smiles: int, seed: int, cutoff: float, log=print) -> list[Example]:
    """Examples from every usable training CIF and from `n_smiles` packed RDKit molecules."""
    from aisolve.models.data.generate import split_of
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    failures: Counter = Counter()
    made = 0
    for st, meta in source_structures(cif_dir, rng):
        if meta["source"] == "smiles" and made >= n_smiles:
            break
        try:
            ex = structure_example(st, rng, cutoff, meta) if st else None
        except (AssertionError, RuntimeError, ValueError, ArithmeticError):
            ex = None
        if meta["source"] == "cif":
            failures["cif_unusable" if ex is None else "ok"] += 1
        if ex is not None:
            out.append(ex)
            made += meta["source"] == "smiles"
    log(f"{sum(ex.meta['source'] == 'cif' for ex in out)} examples from CIFs ({dict(failures)})")
    for ex in out:
        ex.meta["split"] = split_of(ex.meta["compound"], 0)
    log(f"{len(out)} examples in all; splits {dict(Counter(ex.meta['split'] for ex in out))}")
    return out


def save_examples(path: str | Path, examples: list[Example]) -> None:
    import pickle
    with open(path, "wb") as fh:
        pickle.dump(examples, fh, protocol=4)


def load_saved(path: str | Path) -> list[Example]:
    import pickle
    with open(path, "rb") as fh:
        return pickle.load(fh)



def main(argv=None) -> int:
    import argparse
    import time
    p = argparse.ArgumentParser(description="examples for the hydrogen network (training CIFs + packed SMILES)")
    p.add_argument("--cif-dir", help="training-cifs folder")
    p.add_argument("--smiles", type=int, default=3000, help="packed RDKit molecules")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="a .pkl file")
    a = p.parse_args(argv)
    t = time.monotonic()
    examples = make_examples(a.cif_dir, a.smiles, a.seed, CONTEXT_RADIUS)  # edges = context reach
    save_examples(a.output, examples)
    print(f"wrote {len(examples)} examples to {a.output} in {time.monotonic() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
