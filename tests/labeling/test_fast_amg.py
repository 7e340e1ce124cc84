"""The batched AMG path against segment-anything's own SamAutomaticMaskGenerator.

Both run the same tiny random SAM, loaded from a .pth through labeling.backends.sam.load_sam.
With float32 and one crop per encoder call the two must agree bit for bit (same masks, same
RLE bytes, same scores, same order), whatever the point batch size. Encoding several crops
in one call changes the encoder's float rounding (~1e-7), which may flip a pixel whose mask
logit is within that of 0; that case is bounded, not equal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dataset.masks import decode, encode_many
from labeling.backends import build_backend
from labeling.backends.mask_ops import encode_rles, mask_boxes_xyxy, stability_scores
from tests.labeling.conftest_backends import photos, save_tiny_sam

# thresholds that keep a useful number of masks from a random model
SETTINGS = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.75)
_STOCK: dict = {}  # stock AMG results by settings, shared by the tests of this module


@pytest.fixture(scope="module")
def sam_path(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


@pytest.fixture(scope="module")
def images():
    return photos()


def _stock(sam_path, images, **settings):
    key = tuple(sorted(settings.items())) + (len(images),)
    if key not in _STOCK:
        _STOCK[key] = _run("sam-amg", sam_path, images, **settings)
    return _STOCK[key]


def _run(name, sam_path, images, **settings):
    backend = build_backend(name, model_type="tiny", checkpoint=str(sam_path), **settings)
    return [p.instances for p in backend.predict(images, [None] * len(images))]


class PointPassthrough(nn.Module):
    """Stands in for SAM's prompt encoder: hands the point coordinates to the decoder."""

    def forward(self, points, boxes, masks):
        coords = points[0].float()  # [B, 1, 2], model input frame
        return coords, torch.zeros(coords.shape[0], 1, 1, 1)

    def get_dense_pe(self):
        return torch.zeros(1)


class DiscDecoder(nn.Module):
    """Stands in for SAM's mask decoder: three discs (radius 10, 25, 60 input pixels) around
    each point, roughened by the image embedding so edges follow the image a little, and a
    predicted IoU that varies with the point. Unlike a random SAM's masks, which cover the
    whole image, these are local: box NMS, the crop-edge filter, the cross-crop NMS and the
    small-region cleanup all have real choices to make."""

    radii = (10.0, 25.0, 60.0)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                dense_prompt_embeddings, multimask_output):
        points = sparse_prompt_embeddings[:, 0, :]  # [B, 2] (x, y)
        size = image_embeddings.shape[-1] * 4  # SAM's low-res masks are 4x the embedding
        centers = (torch.arange(size, dtype=torch.float32) + 0.5) * 4
        dy = centers[None, :, None] - points[:, 1, None, None]
        dx = centers[None, None, :] - points[:, 0, None, None]
        distance = (dx**2 + dy**2).sqrt()  # [B, h, w]
        texture = F.interpolate(image_embeddings.mean(1, keepdim=True), size=(size, size),
                                mode="bilinear")[0]
        texture = 3 * texture / texture.abs().max()
        masks = torch.stack([(r - distance) / 2 + texture for r in self.radii], dim=1)
        iou = 0.6 + 0.3 * torch.sin(points.sum(-1, keepdim=True) * 0.05 + torch.arange(3.0))
        return masks, iou


def _run_discs(name, sam_path, images, **settings):
    backend = build_backend(name, model_type="tiny", checkpoint=str(sam_path), **settings)
    backend.model.prompt_encoder = PointPassthrough()  # stock's predictor shares the model
    backend.model.mask_decoder = DiscDecoder()
    return [p.instances for p in backend.predict(images, [None] * len(images))]


def _assert_identical(stock, fast):
    assert len(stock) == len(fast)
    for a, b in zip(stock, fast):
        assert len(a) == len(b)
        assert [r["counts"] for r in a.rles] == [r["counts"] for r in b.rles]
        assert [r["bbox"] for r in a.rles] == [r["bbox"] for r in b.rles]
        assert [r["area"] for r in a.rles] == [r["area"] for r in b.rles]
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.stability, b.stability)


def test_mask_ops_match_segment_anything_and_pycocotools():
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

    rng = np.random.default_rng(0)
    masks = rng.random((6, 37, 23)) > 0.6
    masks[0] = False  # empty
    masks[1] = True  # full
    masks[2] = False
    masks[2, 5:9, 3:7] = True  # one block
    masks[3] = False
    masks[3, 0, 0] = True  # first pixel only
    t = torch.from_numpy(masks)
    assert encode_rles(t) == encode_many(masks)
    assert torch.equal(mask_boxes_xyxy(t), batched_mask_to_box(t))
    logits = torch.randn(5, 30, 20) * 3
    assert torch.equal(stability_scores(logits, 0.0, 1.0),
                       calculate_stability_score(logits, 0.0, 1.0))
    assert encode_rles(torch.zeros(0, 4, 4, dtype=torch.bool)) == []


def test_same_masks_as_stock_amg(sam_path, images):
    # box NMS off (IoU > 1 never happens), so every mask that passes the filters is compared
    settings = dict(SETTINGS, box_nms_thresh=1.0)
    stock = _stock(sam_path, images, **settings)
    fast = _run("sam-amg-fast", sam_path, images, image_batch_size=1, points_per_batch=20,
                **settings)  # a point batch size that does not divide the 36 points
    _assert_identical(stock, fast)
    assert sum(len(p) for p in stock) >= 100
    for pred, image in zip(fast, images):
        for r in pred.rles:
            mask = decode(r["counts"], *image.shape[:2])
            assert mask.sum() == r["area"]


@pytest.mark.parametrize("crop_n_layers,min_mask_region_area", [(0, 0), (1, 20)])
def test_same_masks_as_stock_amg_with_nms_crops_and_cleanup(
        sam_path, images, crop_n_layers, min_mask_region_area):
    settings = dict(points_per_side=6, pred_iou_thresh=0.5, stability_score_thresh=0.6,
                    box_nms_thresh=0.7, crop_n_layers=crop_n_layers, crop_nms_thresh=0.7,
                    min_mask_region_area=min_mask_region_area)
    stock = _run_discs("sam-amg", sam_path, images[:2], **settings)
    fast = _run_discs("sam-amg-fast", sam_path, images[:2], image_batch_size=1,
                      points_per_batch=25, **settings)
    _assert_identical(stock, fast)
    for pred, image in zip(stock, images):
        assert len(pred) >= 20  # many local masks survive ...
        assert len(pred) < (108 if crop_n_layers == 0 else 5 * 108)  # ... and NMS drops some
        boxes = np.array([r["bbox"] for r in pred.rles])
        assert (boxes[:, 2] < image.shape[1]).all()  # masks are local, not whole-image


def test_batched_encoder_differs_by_at_most_a_few_pixels(sam_path, images):
    settings = dict(SETTINGS, box_nms_thresh=1.0)
    stock = _stock(sam_path, images, **settings)
    fast = _run("sam-amg-fast", sam_path, images, image_batch_size=3, **settings)
    for a, b, image in zip(stock, fast, images):
        h, w = image.shape[:2]
        assert abs(len(a) - len(b)) <= max(1, len(a) // 50)
        np.testing.assert_allclose(a.scores[:5], b.scores[:5], atol=1e-5)
        for ra, rb in zip(a.rles[:20], b.rles[:20]):
            diff = np.count_nonzero(decode(ra["counts"], h, w) != decode(rb["counts"], h, w))
            assert diff <= 0.001 * h * w


def test_unknown_setting_is_one_clear_error(sam_path):
    with pytest.raises(ValueError, match="points_per_sid"):
        build_backend("sam-amg-fast", model_type="tiny", checkpoint=str(sam_path),
                      points_per_sid=8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_on_cuda_gives_valid_masks_close_to_stock(sam_path, images):
    settings = dict(SETTINGS, box_nms_thresh=1.0)
    stock = _stock(sam_path, images, **settings)
    backend = build_backend("sam-amg-fast", device="cuda", model_type="tiny",
                            checkpoint=str(sam_path), **settings)
    fast = [p.instances for p in backend.predict(images, [None] * len(images))]
    for a, b, image in zip(stock, fast, images):
        assert abs(len(a) - len(b)) <= max(2, len(a) // 5)
        for r in b.rles:
            assert decode(r["counts"], *image.shape[:2]).sum() == r["area"]


def test_fused_attention_matches_the_encoder_and_restores_it(sam_path, images):
    from labeling.backends.sam import load_sam
    from labeling.backends.sam_sdpa import FusedAttention

    model = load_sam("tiny", sam_path)
    with torch.no_grad():
        x = model.preprocess(torch.randint(0, 255, (2, 3, 256, 256)).float())
        plain = model.image_encoder(x)
        fused = FusedAttention(model.image_encoder)
        with fused:
            patched = model.image_encoder(x)
        assert not any("forward" in vars(m) for m in model.image_encoder.modules())
        torch.testing.assert_close(patched, plain, rtol=1e-4, atol=1e-4)
    settings = dict(SETTINGS, box_nms_thresh=1.0)
    stock = _stock(sam_path, images, **settings)
    fast = _run("sam-amg-fast", sam_path, images, image_batch_size=1, sdpa=True, **settings)
    for a, b in zip(stock, fast):
        assert abs(len(a) - len(b)) <= max(1, len(a) // 50)


def test_sam_benchmark_runs_both_paths_on_the_cpu():
    from pipelines.benchmarks.sam import main

    result = main(["--model-type", "tiny", "--images", "2", "--size", "96",
                   "--points-per-side", "6", "--target-kept", "20", "--no-warmup"])
    for scenario in ("defaults", "calibrated"):
        r = result["scenarios"][scenario]
        assert r["stock"]["images_per_s"] > 0 and r["fast"]["images_per_s"] > 0
        assert r["speedup"] > 0
    calibrated = result["scenarios"]["calibrated"]
    assert calibrated["stock"]["masks_per_image"] >= 1
    assert calibrated["matched_share"] >= 0.9  # fp32 on the CPU: (nearly) the same masks
