# MSNet-R50, 16 frames, Something-Something V1, trained as the paper's authors
# trained it: ../msnet_tsm_r50_sthv1_16f.py (MMAction2's TSM recipe) with only
# what their public training script (scripts/train_TSM_Something_v1.sh of
# arunos728/MotionSqueeze, with the defaults of its opts.py) sets.
# docs/paper.md lists these values and what still differs from their code.
# The four Something-Something paper configs set the same values;
# tests/test_paper_configs.py checks that nothing else changes.
_base_ = '../msnet_tsm_r50_sthv1_16f.py'

# SGD, momentum 0.9, Nesterov, weight decay 5e-4, gradient-norm clip 200;
# lr 0.01 for a total batch of 48, scaled linearly to the real total batch.
optim_wrapper = dict(
    optimizer=dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
    clip_grad=dict(max_norm=200))
auto_scale_lr = dict(enable=True, base_batch_size=48)
# 40 epochs, lr x0.1 at epochs 20 and 30, no warm-up.
train_cfg = dict(max_epochs=40)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=40, by_epoch=True,
         milestones=[20, 30], gamma=0.1)
]
model = dict(cls_head=dict(dropout_ratio=0.5))
# Test: 1 clip, centre crop (the validation pipeline), instead of
# MMAction2's 2 clips x 3 crops.
test_pipeline = _base_.val_pipeline
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
