"""MotionSqueezeNeck inside MMAction2's Recognizer2D and Recognizer3D."""
import pytest
import torch
from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample

from msnet_plugin.models import MotionSqueezeNeck

NUM_CLASSES = 5


def data_samples(batch):
    return [ActionDataSample().set_gt_label(i % NUM_CLASSES)
            for i in range(batch)]


def build_2d(out_indices, head, temporal_avg=True, segments=4):
    model = MODELS.build(
        dict(
            type='Recognizer2D',
            backbone=dict(type='ResNet', depth=18, pretrained=None,
                          out_indices=out_indices),
            neck=dict(type='MotionSqueezeNeck', in_channels=512,
                      num_segments=segments, temporal_avg=temporal_avg),
            cls_head=dict(head, num_classes=NUM_CLASSES, in_channels=512)))
    model.init_weights()
    model.eval()
    return model


@pytest.mark.parametrize('out_indices', [(3, ), (2, 3)])
def test_neck_in_recognizer2d_with_tsn_head(out_indices):
    """Single-tensor and tuple backbones: neck = MS, then each clip's mean."""
    torch.manual_seed(0)
    model = build_2d(out_indices, dict(type='TSNHead', average_clips='prob'))
    clips = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        feats, _ = model.extract_feat(clips, stage='neck')
        frames = model.backbone(clips.flatten(0, 1))
        frames = frames[-1] if isinstance(frames, tuple) else frames
        expected = model.neck.motion_squeeze(frames).view(2, 4, 512, 2,
                                                          2).mean(1)
        scores = model(clips, data_samples(2), mode='predict')
    torch.testing.assert_close(feats, expected)
    assert len(scores) == 2 and scores[0].pred_score.shape == (NUM_CLASSES, )


def test_neck_in_recognizer2d_keeps_frames_for_tsm_head():
    torch.manual_seed(0)
    model = build_2d((3, ), dict(type='TSMHead', num_segments=4),
                     temporal_avg=False)
    clips = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        feats, _ = model.extract_feat(clips, stage='neck')
        expected = model.neck.motion_squeeze(model.backbone(
            clips.flatten(0, 1)))
    torch.testing.assert_close(feats, expected)
    model.train()
    losses = model(clips, data_samples(2), mode='loss')
    losses['loss_cls'].backward()
    assert model.neck.motion_squeeze.reduce[0].weight.grad.abs().sum() > 0


def test_neck_in_recognizer3d():
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='Recognizer3D',
            backbone=dict(type='ResNet3d', depth=18, pretrained=None,
                          pretrained2d=False, conv1_stride_t=1,
                          pool1_stride_t=1, with_pool2=False,
                          inflate=(0, 0, 0, 0)),
            neck=dict(type='MotionSqueezeNeck', in_channels=512,
                      num_segments=4),
            cls_head=dict(type='I3DHead', num_classes=NUM_CLASSES,
                          in_channels=512)))
    model.init_weights()
    clips = torch.randn(2, 1, 3, 4, 64, 64)  # (N, crops, C, T, H, W)
    feats, _ = model.extract_feat(clips, stage='neck')
    assert feats.shape == (2, 512, 4, 2, 2)
    losses = model(clips, data_samples(2), mode='loss')
    losses['loss_cls'].backward()
    for name, param in model.neck.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_neck_errors():
    neck = MotionSqueezeNeck(16, num_segments=4)
    with pytest.raises(ValueError, match='T=8 frames, but num_segments=4'):
        neck(torch.randn(1, 16, 8, 5, 5))
    with pytest.raises(ValueError, match='got a 5-D|expects'):
        neck(torch.randn(16, 5, 5))
    with pytest.raises(ValueError, match='multiple of num_segments=4'):
        neck([torch.randn(1, 16, 6, 5, 5)])
