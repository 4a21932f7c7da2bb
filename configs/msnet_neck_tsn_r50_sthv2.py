# MS mixed into an existing MMAction2 model: MMAction2's own TSN-R50 sthv2
# recipe (plain 2D ResNet-50, TSNHead) with a MotionSqueezeNeck on the
# backbone's last features (2048 channels, stride 32).
_base_ = [
    'mmaction::recognition/tsn/'
    'tsn_imagenet-pretrained-r50_8xb32-1x1x8-50e_sthv2-rgb.py',
    './_base_/msnet_plugin.py'
]

num_segments = 8
model = dict(
    # The backbone returns layer3 and layer4, as MMAction2's multi-level
    # necks expect: Recognizer2D hands a neck each level as (N, C, T, H, W)
    # clips; the neck fuses motion into the last (feature_index=-1).
    backbone=dict(out_indices=(2, 3)),
    # In Recognizer2D the neck averages each clip's fused frames, as TSN's
    # consensus would; TSNHead then sees one segment per clip.
    neck=dict(
        type='MotionSqueezeNeck', in_channels=2048,
        num_segments=num_segments))

# MMAction2's TSN test samples 25 frames; MS pairs frames within clips of
# `num_segments`, so the test samples 8 (x 10 crops) like training.
test_pipeline = [
    dict(step, num_clips=num_segments) if step.type == 'SampleFrames' else step
    for step in _base_.test_pipeline
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

# Checkpoints written atomically (msnet_plugin/fileio.py).
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
