"""Thing instances from a mask-classification model's queries (panoptic inference).

Each query has a class distribution (the last entry is "no object") and a mask. A query
counts when its most likely class is a real class with probability above `threshold`.
Every pixel goes to the counting query with the highest probability-weighted mask score; a
query's segment is the pixels it wins where its own mask is on (sigmoid >= 0.5), kept when
that is more than `overlap_threshold` of its mask (so queries mostly hidden behind others
are dropped). Segments of thing classes become instances, scored by class probability.
"""

from __future__ import annotations

import numpy as np
import torch

from labeling.backends.base import InstancePrediction


def thing_segments(class_logits: torch.Tensor, mask_logits: torch.Tensor,
                   thing_ids: list[int], threshold: float = 0.8,
                   overlap_threshold: float = 0.8, source: str = "") -> InstancePrediction:
    """class_logits [Q, C+1], mask_logits [Q, H, W] at the image's size -> thing instances."""
    num_classes = class_logits.shape[-1] - 1
    prob, label = class_logits.softmax(dim=-1).max(dim=-1)
    keep = (label != num_classes) & (prob > threshold)
    prob, label, masks = prob[keep], label[keep], mask_logits[keep].sigmoid()
    h, w = mask_logits.shape[-2:]
    empty = InstancePrediction(scores=np.zeros(0, np.float32), masks=np.zeros((0, h, w), bool),
                               category_ids=np.zeros(0, np.int32), source=source)
    if len(prob) == 0:
        return empty
    owner = (prob[:, None, None] * masks).argmax(dim=0)  # [H, W]
    on = masks >= 0.5
    won = on & (owner[None] == torch.arange(len(prob), device=owner.device)[:, None, None])
    area, full = won.sum(dim=(1, 2)), on.sum(dim=(1, 2))
    things = torch.tensor(thing_ids, device=label.device)
    ok = (area > 0) & (area > overlap_threshold * full) & torch.isin(label, things)
    if not bool(ok.any()):
        return empty
    return InstancePrediction(
        scores=prob[ok].cpu().numpy().astype(np.float32),
        masks=won[ok].cpu().numpy(),
        category_ids=label[ok].cpu().numpy().astype(np.int32),
        source=source,
    )
