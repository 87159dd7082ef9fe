"""Molecules from SMILES (RDKit's NCI set, or the MOSES set from the molsets wheel) as 3D conformers."""
from __future__ import annotations

import gzip
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import aisolve.core  # noqa: F401  (cctbx before rdkit)
from rdkit import Chem, RDConfig, RDLogger
from rdkit.Chem import AllChem
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")

ALLOWED = {"H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I"}


@dataclass
class Molecule:
    smiles: str
    scaffold: str  # Murcko scaffold: the unit that must not straddle splits
    elements: list[str]
    xyz: np.ndarray  # Cartesian, A, centred on the heavy-atom centroid

    @property
    def n_heavy(self) -> int:
        return sum(1 for e in self.elements if e != "H")


def nci_smiles() -> list[str]:
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def moses_smiles(wheel: str | os.PathLike, limit: int | None = None) -> list[str]:
    """SMILES from moses/dataset/data/train.csv.gz inside a downloaded molsets wheel."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith("train.csv.gz"))
        text = gzip.decompress(zf.read(name)).decode()
    rows = [r.split(",")[0] for r in io.StringIO(text).read().splitlines()[1:]]
    return rows[:limit] if limit else rows


def scaffold_of(smiles: str) -> str:
    try:
        scaf = MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles)
    except (ValueError, RuntimeError):
        scaf = ""
    return scaf or Chem.CanonSmiles(smiles)


def embed(smiles: str, seed: int, min_heavy: int = 4, max_heavy: int = 40) -> Molecule | None:
    """A 3D conformer with hydrogens (ETKDG), or None when the molecule does not qualify."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    frags = Chem.GetMolFrags(mol, asMols=True)
    mol = max(frags, key=lambda m: m.GetNumHeavyAtoms())  # drop counter-ions and salts
    if not (min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy):
        return None
    if any(a.GetSymbol() not in ALLOWED for a in mol.GetAtoms()):
        return None
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        return None
    xyz = mol.GetConformer().GetPositions()
    elements = [a.GetSymbol() for a in mol.GetAtoms()]
    heavy = np.array([e != "H" for e in elements])
    xyz = xyz - xyz[heavy].mean(axis=0)
    canon = Chem.MolToSmiles(Chem.RemoveHs(mol))
    return Molecule(canon, scaffold_of(canon), elements, xyz)
