# msnet_plugin.py with the strict hooks (msnet_plugin/hooks), for configs
# that train from what they name: stop at a NaN/inf loss naming the
# iteration; refuse a checkpoint that does not fit the model, listing what
# differs; check labels against num_classes before training and report
# skipped bad samples; keep random states in checkpoints for exact resumes.
_base_ = './msnet_plugin.py'

custom_hooks = [
    dict(type='CheckInvalidLossHook', interval=1),
    dict(type='CheckpointMatchHook'),
    dict(type='DatasetCheckHook'),
    dict(type='RandomStateHook'),
]
