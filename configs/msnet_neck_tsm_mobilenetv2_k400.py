# MS in a second backbone family: MMAction2's own TSM-MobileNetV2 Kinetics-400
# recipe with a MotionSqueezeNeck on the backbone's last features (1280
# channels, stride 32), before TSMHead.
_base_ = [
    'mmaction::recognition/tsm/'
    'tsm_imagenet-pretrained-mobilenetv2_8xb16-1x1x8-100e_kinetics400-rgb.py',
    './_base_/msnet_plugin.py'
]

model = dict(
    # Two levels (the 320-channel stage and the final 1280-channel conv), as
    # MMAction2's multi-level necks expect; the neck fuses into the last.
    backbone=dict(out_indices=(6, 7)),
    # TSMHead regroups frames by its own num_segments, so the neck keeps
    # every frame (temporal_avg=False).
    neck=dict(
        type='MotionSqueezeNeck', in_channels=1280, num_segments=8,
        temporal_avg=False))

# Checkpoints written atomically (msnet_plugin/fileio.py).
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
