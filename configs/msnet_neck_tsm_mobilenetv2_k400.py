# MS in a second backbone family: MMAction2's own TSM-MobileNetV2 Kinetics-400
# recipe with a MotionSqueezeNeck on the backbone's last features (1280
# channels, stride 32), before TSMHead.
_base_ = ('mmaction::recognition/tsm/'
          'tsm_imagenet-pretrained-mobilenetv2_8xb16-1x1x8-100e_kinetics400-rgb.py')

custom_imports = dict(imports=['msnet_plugin'], allow_failed_imports=False)
# Logs which model tensors a load_from/resume checkpoint filled, which are
# new and which went unused (docs/training.md, "Warm start from the model
# zoo").
# Log which tensors a load filled; stop at a NaN/inf loss, naming the
# iteration (msnet_plugin/hooks).
custom_hooks = [
    dict(type='CheckpointMatchHook', refuse=False),
    dict(type='CheckInvalidLossHook', interval=1)
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

# Checkpoints are written atomically (msnet_plugin/fileio.py): a crash or a
# full disk during a save never leaves a truncated epoch_N.pth.
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
