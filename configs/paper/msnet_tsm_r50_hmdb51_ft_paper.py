# MSNet-R50, 16 frames, HMDB51, fine-tuned from the paper-recipe Kinetics-400
# MSNet (msnet_tsm_r50_k400_16f_paper.py). The authors published no HMDB51
# script: the fine-tuning schedule stays that of ../msnet_tsm_r50_hmdb51_ft.py;
# only the starting checkpoint, the test protocol of their Kinetics code
# (10 clips x 3 crops) and the work folder change. The split is chosen as in
# the parent config:
#
#   HMDB51_SPLIT=2 python tools/train.py \
#       configs/paper/msnet_tsm_r50_hmdb51_ft_paper.py
#
# tests/test_paper_configs.py checks that nothing else changes.
_base_ = '../msnet_tsm_r50_hmdb51_ft.py'

# The checkpoint that configs/paper/msnet_tsm_r50_k400_16f_paper.py trains
# (copy or link its best epoch here).
load_from = 'checkpoints/msnet_tsm_r50_k400_16f_paper.pth'
test_pipeline = [
    dict(type='ThreeCrop', crop_size=256) if step.type == 'TenCrop' else step
    for step in _base_.test_pipeline
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
work_dir = f'./work_dirs/msnet_tsm_r50_hmdb51_ft_paper_split{_base_.split}'
