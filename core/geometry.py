"""Neighbours and bonds with symmetry: the chemistry the typers and the hydrogen placer look at."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cctbx import crystal, sgtbx, xray
from cctbx.eltbx import covalent_radii

BOND_TOLERANCE = 0.45  # A added to the sum of covalent radii, as in SHELX's CONN default (0.5)


def structure_from_sites(symmetry: crystal.symmetry, sites, elements: list[str],
                         u_iso: float = 0.03) -> xray.structure:
    """A bare xray.structure (labels X1, X2...) for sites and elements: geometry and quick models."""
    xs = xray.structure(crystal_symmetry=symmetry)
    for k, (site, el) in enumerate(zip(sites, elements)):
        xs.add_scatterer(xray.scatterer(label=f"X{k + 1}", site=tuple(site), u=u_iso, scattering_type=el))
    return xs


def covalent_radius(element: str) -> float:
    if element in ("Q", ""):
        return 0.77
    try:
        return covalent_radii.table(element).radius()
    except (RuntimeError, ValueError):
        return 1.5


@dataclass
class Contact:
    j: int  # index of the other atom
    distance: float
    op: sgtbx.rt_mx  # applied to atom j's site
    site: tuple[float, float, float]  # fractional site of the symmetry copy of j


def contacts(xs: xray.structure, cutoff: float = 3.2) -> list[list[Contact]]:
    """All contacts up to `cutoff` for every atom, each listed from both sides."""
    uc = xs.unit_cell()
    sites = xs.sites_frac()
    asu = xs.asu_mappings(buffer_thickness=cutoff)
    table = crystal.pair_asu_table(asu)
    table.add_all_pairs(distance_cutoff=cutoff)
    sym_table = table.extract_pair_sym_table(skip_j_seq_less_than_i_seq=False,
                                             all_interactions_from_inside_asu=True)
    out: list[list[Contact]] = [[] for _ in range(sites.size())]
    for i, row in enumerate(sym_table):
        for j, ops in row.items():
            for op in ops:
                site = op * sites[j]
                out[i].append(Contact(j, uc.distance(sites[i], site), op, tuple(site)))
    for row in out:
        row.sort(key=lambda c: c.distance)
    return out


def bonds(xs: xray.structure, elements: list[str] | None = None,
          tolerance: float = BOND_TOLERANCE) -> list[list[Contact]]:
    """Covalent bonds: contacts shorter than the sum of covalent radii plus `tolerance`."""
    elements = elements or [sc.scattering_type for sc in xs.scatterers()]
    radii = [covalent_radius(e) for e in elements]
    all_contacts = contacts(xs, cutoff=max(radii) * 2 + tolerance)
    return [[c for c in row if 0.5 < c.distance < radii[i] + radii[c.j] + tolerance]
            for i, row in enumerate(all_contacts)]


def images_near(symmetry: crystal.symmetry, sites_frac, centre, radius: float = np.inf) -> np.ndarray:
    """(k, 3) Cartesian positions of the symmetry copies of `sites_frac` (each operator's copy
    taken in the cell nearest `centre`, fractional) that lie within `radius` of `centre`."""
    images, orth = _symmetry_images(symmetry, sites_frac)
    images -= np.round(images - np.asarray(centre, dtype=float))
    cart = images.reshape(-1, 3) @ orth.T
    return cart[np.linalg.norm(cart - orth @ np.asarray(centre, dtype=float), axis=1) < radius]


def symmetry_duplicates(symmetry: crystal.symmetry, sites_frac, tolerance: float = 0.1) -> list[tuple[int, int, float]]:
    """(j, i, distance) for each site i that lies within `tolerance` (A) of a symmetry copy of an
    earlier site j (the first such j): a model that lists an atom and its symmetry copy."""
    sites = np.asarray(sites_frac, dtype=float).reshape(-1, 3)
    images, orth = _symmetry_images(symmetry, sites)
    out = []
    for i in range(1, len(sites)):
        delta = images[:, :i, :] - sites[i]
        delta -= np.round(delta)
        dist = np.linalg.norm(delta @ orth.T, axis=2).min(axis=0)
        close = np.flatnonzero(dist < tolerance)
        if close.size:
            out.append((int(close[0]), i, float(dist[close[0]])))
    return out


def _symmetry_images(symmetry: crystal.symmetry, sites_frac) -> tuple[np.ndarray, np.ndarray]:
    """(operators, sites, 3) fractional images of `sites_frac` under every operator of the space
    group, and the orthogonalisation matrix."""
    sites = np.asarray(sites_frac, dtype=float).reshape(-1, 3)
    ops = symmetry.space_group().all_ops()
    rot = np.array([op.r().as_double() for op in ops]).reshape(-1, 3, 3)
    trans = np.array([op.t().as_double() for op in ops])
    orth = np.array(symmetry.unit_cell().orthogonalization_matrix()).reshape(3, 3)
    return np.einsum("oij,nj->oni", rot, sites) + trans[:, None, :], orth
