# MSNet-R50, 8 frames, Kinetics-400 videos: MMAction2's own TSM-R50 Kinetics
# recipe with dense sampling (8 frames, one every 8, from a 64-frame window;
# test: 10 windows x 10 crops) and a plain horizontal flip (no label map:
# Kinetics classes are mirror-symmetric), plus one MotionSqueeze between
# layer2 and layer3. The schedule is MMAction2's (50 epochs, lr 0.02 for
# 8 x 16 clips, steps at 25 and 45), not the paper's 75 epochs.
_base_ = ('mmaction::recognition/tsm/'
          'tsm_imagenet-pretrained-r50_8xb16-dense-1x1x8-50e_kinetics400-rgb.py')

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

model = dict(backbone=dict(type='MSResNetTSM', ms_stages=(1, ), ms_cfg=dict()))

# Checkpoints are written atomically (msnet_plugin/fileio.py): a crash or a
# full disk during a save never leaves a truncated epoch_N.pth.
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
