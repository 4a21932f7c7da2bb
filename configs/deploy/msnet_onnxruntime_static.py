# mmdeploy deploy config for MSNet recognizers: ONNX (standard operators,
# opset 17) run by mmdeploy's onnxruntime backend, static input shape (the
# shape of the video given to torch2onnx after the test pipeline). The same
# settings as mmdeploy's video-recognition_2d_onnxruntime_static.py, which
# the mmdeploy wheel does not ship. docs/deploy.md has the route.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True)
codebase_config = dict(type='mmaction', task='VideoRecognition')
backend_config = dict(type='onnxruntime')
