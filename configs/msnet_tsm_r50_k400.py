# MSNet-R50, 8 frames, Kinetics-400 videos: MMAction2's own TSM-R50 Kinetics
# recipe with dense sampling (8 frames, one every 8, from a 64-frame window;
# test: 10 windows x 10 crops) and a plain horizontal flip (no label map:
# Kinetics classes are mirror-symmetric), plus one MotionSqueeze between
# layer2 and layer3. The schedule is MMAction2's (50 epochs, lr 0.02 for
# 8 x 16 clips, steps at 25 and 45), not the paper's 75 epochs.
_base_ = [
    'mmaction::recognition/tsm/'
    'tsm_imagenet-pretrained-r50_8xb16-dense-1x1x8-50e_kinetics400-rgb.py',
    './_base_/msnet_plugin.py'
]

model = dict(backbone=dict(type='MSResNetTSM', ms_stages=(1, ), ms_cfg=dict()))

# Checkpoints written atomically (msnet_plugin/fileio.py).
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
