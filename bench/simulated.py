"""Shared by the benchmarks on simulated data (h_density.py, elements_solve.py): the known
structures of one split, and the report's last steps."""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

import numpy as np


def split_structures(cif_dir: str | None, split: str, seed: int, n_smiles: int, n_cifs: int | None = None,
                     keep: Callable | None = None):
    """(structure, meta, seed for its measurement) of one split (by compound, split seed 0 as every
    data set): the training CIFs' major components (at most `n_cifs`), then `n_smiles` packed NCI
    molecules; `keep(structure)` drops the unwanted. The same arguments give the same structures."""
    from aisolve.models.data.generate import split_of
    from aisolve.models.h_data import source_structures
    rng = np.random.default_rng(seed)
    made = Counter()
    limit = {"cif": n_cifs, "smiles": n_smiles}
    for st, meta in source_structures(cif_dir, rng, lambda m: split_of(m["compound"], 0) == split):
        source = meta["source"]
        if source == "smiles" and made[source] >= n_smiles:
            return
        if st is None or (keep is not None and not keep(st)):
            continue
        if limit[source] is not None and made[source] >= limit[source]:
            continue
        made[source] += 1
        yield st, meta, int(rng.integers(1 << 30))


def finish(report: dict, rows: list, json_path: str | None, t0: float) -> int:
    report["seconds"] = round(time.monotonic() - t0)
    print(json.dumps(report, indent=1))
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"report": report, "rows": rows}, fh, indent=1)
    return 0
