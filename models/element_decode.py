"""Decoding the element network's outputs: allowed classes, second-pass tokens, count-honouring assignment."""
from __future__ import annotations

import numpy as np

from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.models.element_net import MAX_Z, N_CLASSES, NOT_ATOM_TOKEN

# never a non-H atom class: H itself (H peaks are 'not an atom' in the labels) and the noble gases
_NEVER = {1, 2, 10, 18, 36, 54, 86}


def allowed_mask(contents: dict[str, float] | None, candidate_elements: tuple[str, ...] = ()) -> np.ndarray:
    """Classes a peak may take: 'not an atom' and the contents' non-H elements (or, without
    contents, the candidate elements), or every element."""
    mask = np.zeros(N_CLASSES, dtype=bool)
    mask[0] = True
    named = contents or {el: 1.0 for el in candidate_elements}
    if named:
        for el, n in named.items():
            z = ATOMIC_NUMBER.get(el)
            if n > 0 and z is not None and z <= MAX_Z and z not in _NEVER:
                mask[z] = True
    else:
        mask[1:] = True
        mask[list(_NEVER)] = False
    return mask


def second_pass_tokens(pred: np.ndarray) -> np.ndarray:
    """First-pass classes as second-pass tokens (class 0 becomes the 'called no atom' token)."""
    pred = np.asarray(pred, dtype=np.int64)
    return np.where(pred > 0, pred, NOT_ATOM_TOKEN)


def log_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    x = np.where(mask, logits, -np.inf)
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))
