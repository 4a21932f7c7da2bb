# MSNet-R50, 8 frames, Something-Something V1: MMAction2's own TSM-R50 recipe
# with one MotionSqueeze between layer2 and layer3 (Kwon et al., ECCV 2020).
#
# MMAction2 1.x ships no sthv1 TSM config, so this inherits its sthv2 TSM-R50
# recipe (model, schedule, optimizer, runtime) and switches the data to sthv1
# rawframes the way MMAction2's TANet sthv1 config does, with the sthv1 flip
# label map. Everything else is MMAction2's.
_base_ = [
    'mmaction::recognition/tsm/'
    'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py',
    './_base_/msnet_plugin_strict.py'
]

# The only model change: ResNetTSM -> MSResNetTSM (all ResNetTSM arguments
# stay as inherited). ms_cfg takes MotionSqueeze overrides for ablations.
model = dict(backbone=dict(type='MSResNetTSM', ms_stages=(1, ), ms_cfg=dict()))

# Something-Something V1 rawframes, prepared with MMAction2's sthv1 data
# tools (docs/datasets.md).
# RawframeDataset whose errors name the frame folder and its annotation
# line; skip_bad_samples=True on the train set skips and counts them.
dataset_type = 'CheckedRawframeDataset'
data_root = 'data/sthv1/rawframes'
data_root_val = 'data/sthv1/rawframes'
ann_file_train = 'data/sthv1/sthv1_train_list_rawframes.txt'
ann_file_val = 'data/sthv1/sthv1_val_list_rawframes.txt'
file_client_args = dict(io_backend='disk')

# Labels of left/right mirror pairs ("Pushing something from left to right"
# and its mirror, ...): a horizontal flip swaps them.
sthv1_flip_label_map = {2: 4, 4: 2, 30: 41, 41: 30, 52: 66, 66: 52}

train_pipeline = [
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8),
    dict(type='RawFrameDecode', **file_client_args),
    dict(type='Resize', scale=(-1, 256)),
    dict(
        type='MultiScaleCrop',
        input_size=224,
        scales=(1, 0.875, 0.75, 0.66),
        random_crop=False,
        max_wh_scale_gap=1,
        num_fixed_crops=13),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5, flip_label_map=sthv1_flip_label_map),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=8,
        test_mode=True),
    dict(type='RawFrameDecode', **file_client_args),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=8,
        twice_sample=True,
        test_mode=True),
    dict(type='RawFrameDecode', **file_client_args),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='ThreeCrop', crop_size=256),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]

sthv1_dataset = dict(
    type=dataset_type,
    ann_file=ann_file_train,
    # _delete_ drops the inherited sthv2 `video` prefix.
    data_prefix=dict(_delete_=True, img=data_root),
    filename_tmpl='{:05}.jpg')
sthv1_val_dataset = dict(
    sthv1_dataset,
    ann_file=ann_file_val,
    data_prefix=dict(_delete_=True, img=data_root_val),
    test_mode=True)
train_dataloader = dict(dataset=dict(sthv1_dataset, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(sthv1_val_dataset, pipeline=val_pipeline))
test_dataloader = dict(
    dataset=dict(sthv1_val_dataset, pipeline=test_pipeline))

# Checkpoints written atomically (msnet_plugin/fileio.py).
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
