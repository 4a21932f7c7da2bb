# MSNet-R50, 8 frames, Something-Something V2 videos: MMAction2's own TSM-R50
# sthv2 recipe (model, data, sthv2 flip label map, schedule, optimizer,
# runtime) with one MotionSqueeze between layer2 and layer3 (Kwon et al.,
# ECCV 2020).
_base_ = ('mmaction::recognition/tsm/'
          'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py')

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

# The only change: ResNetTSM -> MSResNetTSM (ResNetTSM arguments inherited).
model = dict(backbone=dict(type='MSResNetTSM', ms_stages=(1, ), ms_cfg=dict()))

# Checkpoints are written atomically (msnet_plugin/fileio.py): a crash or a
# full disk during a save never leaves a truncated epoch_N.pth.
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
