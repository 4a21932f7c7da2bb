# MS mixed into an existing MMAction2 model: MMAction2's own TRN-R50 sthv2
# recipe (data, schedule, TRN's multi-scale relation head over 8 segments)
# with the MSNet backbone (TSM ResNet-50 + MotionSqueeze after layer2)
# instead of TRN's plain ResNet-50.
_base_ = [
    'mmaction::recognition/trn/'
    'trn_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py',
    './_base_/msnet_plugin.py'
]

model = dict(
    backbone=dict(
        type='MSResNetTSM',
        num_segments=8,  # = TRNHead's num_segments
        shift_div=8,
        ms_stages=(1, ),
        ms_cfg=dict()))

# Checkpoints written atomically (msnet_plugin/fileio.py).
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
