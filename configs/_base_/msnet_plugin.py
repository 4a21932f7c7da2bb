# What every msnet-plugin config adds to the MMAction2 recipe it inherits,
# listed after the recipe:
#
#   _base_ = ['mmaction::recognition/tsm/...py', './_base_/msnet_plugin.py']
#
# mmengine refuses a key that two bases both define, so what changes a key
# the recipe has (the atomic checkpoint backend in default_hooks) stays in
# each config.
custom_imports = dict(imports=['msnet_plugin'], allow_failed_imports=False)

# Warm start (msnet_plugin/hooks): log which model tensors a load_from/resume
# checkpoint filled, which are new and which went unused (docs/training.md,
# "Warm start from the model zoo"); stop at a NaN/inf loss, naming the
# iteration.
custom_hooks = [
    dict(type='CheckpointMatchHook', refuse=False),
    dict(type='CheckInvalidLossHook', interval=1)
]
