# MSNet-R50, 8 frames, Something-Something V2 videos: MMAction2's own TSM-R50
# sthv2 recipe (model, data, sthv2 flip label map, schedule, optimizer,
# runtime) with one MotionSqueeze between layer2 and layer3 (Kwon et al.,
# ECCV 2020).
_base_ = [
    'mmaction::recognition/tsm/'
    'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py',
    './_base_/msnet_plugin.py'
]

# The only change: ResNetTSM -> MSResNetTSM (ResNetTSM arguments inherited).
model = dict(backbone=dict(type='MSResNetTSM', ms_stages=(1, ), ms_cfg=dict()))

# Checkpoints written atomically (msnet_plugin/fileio.py).
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
