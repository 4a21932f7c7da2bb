# The demo (configs/msnet_r18_demo_synthetic.py, its hooks kept) plus
# MotionVisualizationHook:
# after every validation, the motion maps of the first 4 validation clips
# (RGB frames, displacement, confidence) go to the visualizer's backends,
# here PNGs under work_dirs/<config>/<timestamp>/vis_data/vis_image/.
#
#   python tools/train.py configs/msnet_r18_demo_synthetic_motion_vis.py
#
# For TensorBoard as well (pip install tensorboard), add to this config:
#   visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
#                                   dict(type='TensorboardVisBackend')])
_base_ = ['./msnet_r18_demo_synthetic.py']

custom_hooks = _base_.custom_hooks + [
    dict(type='MotionVisualizationHook', interval=1, num_clips=4,
         full_saturation=1.0)
]
