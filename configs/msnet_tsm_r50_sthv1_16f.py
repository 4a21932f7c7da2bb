# MSNet-R50, 16 frames, Something-Something V1 rawframes: the 8-frame config
# (msnet_tsm_r50_sthv1.py) with 16 segments in the backbone (MS follows the
# backbone), the head and the frame sampling. Nothing else changes.
_base_ = './msnet_tsm_r50_sthv1.py'

num_segments = 16
model = dict(
    backbone=dict(num_segments=num_segments),
    cls_head=dict(num_segments=num_segments))

# The 8-frame pipelines, sampling `num_segments` frames per clip.
train_pipeline, val_pipeline, test_pipeline = (
    [dict(step, num_clips=num_segments) if step.type == 'SampleFrames' else step
     for step in pipeline] for pipeline in
    (_base_.train_pipeline, _base_.val_pipeline, _base_.test_pipeline))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
