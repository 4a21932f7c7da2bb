# MSNet-R50, 16 frames, HMDB51 videos, fine-tuned from a Kinetics-400 MSNet
# checkpoint (the paper's HMDB51 result). Model, data pipelines and test
# protocol come from msnet_tsm_r50_k400_16f.py (MMAction2's TSM Kinetics
# recipe with MS), with HMDB51's 51 classes and a fine-tuning schedule.
#
# The split (1, 2 or 3) is chosen by ONE environment variable, read when the
# config is parsed (mmengine's `{{$NAME:default}}` syntax), so every file name
# that depends on it follows:
#
#   HMDB51_SPLIT=2 python tools/train.py configs/msnet_tsm_r50_hmdb51_ft.py \
#       --cfg-options load_from=/path/to/msnet_tsm_r50_k400_16f.pth
#
# (`--cfg-options split=2` would NOT work: options are applied after the
# config's variables have been evaluated into the annotation file names.)
_base_ = './msnet_tsm_r50_k400_16f.py'

split = '{{$HMDB51_SPLIT:1}}'
if split not in ('1', '2', '3'):
    raise ValueError(
        f'HMDB51_SPLIT must be 1, 2 or 3 (the three official HMDB51 '
        f'splits), got {split!r}')
split = int(split)

# Kinetics-400 MSNet weights: every backbone and MS weight loads; the
# 400-class fc does not fit the 51-class head, is reported as a size
# mismatch and keeps its fresh init.
load_from = 'checkpoints/msnet_tsm_r50_k400_16f.pth'

model = dict(
    backbone=dict(pretrained=None),  # the weights come from load_from
    cls_head=dict(num_classes=51, dropout_ratio=0.8))

# MMAction2's HMDB51 layout (tools/data/hmdb51): videos in
# data/hmdb51/videos/<class>/<name>.avi, file lists written by
# tools/data/build_file_list.py hmdb51 ... --format videos.
data_root = 'data/hmdb51/videos'
ann_file_train = f'data/hmdb51/hmdb51_train_split_{split}_videos.txt'
ann_file_val = f'data/hmdb51/hmdb51_val_split_{split}_videos.txt'
train_dataloader = dict(
    batch_size=8,
    dataset=dict(ann_file=ann_file_train, data_prefix=dict(video=data_root)))
val_dataloader = dict(
    batch_size=8,
    dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))
test_dataloader = dict(
    dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))

# Fine-tuning schedule (TSM's Kinetics -> UCF101/HMDB51 recipe): 25 epochs,
# lr 0.001 for 8 x 8 clips, x0.1 at epochs 10 and 20, no warm-up; the fc
# learns 5x faster (TSMOptimWrapperConstructor's fc_lr5, inherited).
train_cfg = dict(max_epochs=25)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True,
         milestones=[10, 20], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.001))
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(checkpoint=dict(interval=5))
work_dir = f'./work_dirs/msnet_tsm_r50_hmdb51_ft_split{split}'
