# Demo: MSNet-R18 trained from scratch, in minutes on a CPU, on a dataset the
# plugin generates itself (msnet_plugin.datasets.SyntheticMotionDataset): a
# random texture, new for every clip, moving right, left, down or up. No
# single frame tells the direction, so only motion decides the label.
#
#   python tools/train.py configs/msnet_r18_demo_synthetic.py
#
# The videos are written once to data/msnet_demo/ (mp4, decoded by decord
# through MMAction2's own pipeline), then reused.
_base_ = [
    'mmaction::_base_/models/tsm_r50.py', 'mmaction::_base_/default_runtime.py',
    './_base_/msnet_plugin_strict.py'
]

num_segments = 8
frame_size = 64
num_classes = 4

model = dict(
    backbone=dict(
        type='MSResNetTSM',
        depth=18,
        pretrained=None,
        num_segments=num_segments,
        ms_stages=(1, ),  # after layer2: 128 channels at stride 8
        ms_cfg=dict()),
    cls_head=dict(
        num_classes=num_classes,
        in_channels=512,
        num_segments=num_segments,
        init_std=0.01))

dataset_type = 'SyntheticMotionDataset'
# Horizontal flips turn "right" into "left" and back.
flip_label_map = {0: 1, 1: 0}
train_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1,
         num_clips=num_segments),
    dict(type='DecordDecode'),
    dict(type='Flip', flip_ratio=0.5, flip_label_map=flip_label_map),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1,
         num_clips=num_segments, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
# What MMAction2's inference APIs (init_recognizer, inference_recognizer,
# MMAction2Inferencer, demo/) read: the validation pipeline. Real videos keep
# their size (the network is fully convolutional), as the motion maps and
# their comparison with optical flow (docs/visualization.md) need.
test_pipeline = val_pipeline
synthetic = dict(type=dataset_type, num_frames=num_segments, size=frame_size,
                 speed=8, num_classes=num_classes)

train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(synthetic, data_root='data/msnet_demo/train',
                 num_videos=320, seed=0, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(synthetic, data_root='data/msnet_demo/val', num_videos=96,
                 seed=1, pipeline=val_pipeline, test_mode=True))
test_dataloader = dict(
    val_dataloader,
    dataset=dict(val_dataloader['dataset'], pipeline=test_pipeline))

val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=4, val_begin=1,
                 val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=4, eta_min=0, by_epoch=True,
         begin=0, end=4)
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=20, norm_type=2))

# Checkpoints written atomically (msnet_plugin/fileio.py).
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto',
                    backend_args=dict(backend='atomic_local')))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
