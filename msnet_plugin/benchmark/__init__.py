"""What tools/benchmark.py and tools/motion_benchmark.py measure.

- :mod:`.parts`: the speed benchmark's parts (MSNet-R50 against TSM-R50,
  onnxruntime, torch.compile, the correlation kernels, the profiler), each a
  function ``run_<part>(args, device) -> dict``;
- :mod:`.report`: the markdown table of each part;
- :mod:`.motion`: training on synthetic motion once per model and seed;
- :mod:`.motion_report`: the summary over seeds, its table, plot and
  results file.

The measuring itself (alternating medians, peak memory, training steps) is
:mod:`msnet_plugin.benchmarking`. Nothing is imported here, so that
``import msnet_plugin`` does not load the benchmarks.
"""
