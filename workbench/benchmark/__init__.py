"""The GRU Workbench benchmark: workbench vs torchrl's ``GRUModule`` vs bare torch, in one interleaved run.

Run it as ``python -m workbench bench [--quick] [--json FILE] [--device cuda]`` or
``python benchmarks/gru_bench.py [...]``. Every section first checks that the contestants
compute the same thing (outputs and gradients against torchrl's module with the same
weights, float32 and float64), then times them round-robin (``workbench.measure.interleaved``:
``torch.utils.benchmark.Timer`` blocks, the starting contestant rotating every round) and
reports medians, ratios and peak memory. At the end every target of the issue is listed with
its measured value.

Definitions used throughout:

- *floor*: bare ``torch.nn.GRU`` (``torch.nn.GRUCell`` for single steps) on the same data
  *without* resets: one call from the stored state at ``t = 0``;
- *torchrl*: ``torchrl.modules.GRUModule`` as installed (``recurrent_backend="pad"``, its
  default), same weights, same TensorDict;
- *workbench*: ``workbench.GRUModule`` with ``recurrent_backend="auto"`` (the column
  "picked" says what it chose); ``workbench:<backend>`` forces one;
- *forward*: under ``torch.no_grad()``; *forward+backward*: ``backward()`` of the sum of the
  outputs (the value and ``("next", h)``) to the parameters, the inputs and the stored
  hidden states;
- *peak memory*: the peak of bytes allocated during one forward+backward call, from the torch
  profiler's allocator events on CPU (``profile_memory=True``, running sum of allocations and
  frees) and ``torch.cuda.max_memory_allocated`` on CUDA; the same method for everyone.

Modules: :mod:`~workbench.benchmark.report` (rows, targets, checks, the table),
:mod:`~workbench.benchmark.sections` (what is measured), :mod:`~workbench.benchmark.runner`
(settings, order, JSON). Importing this package loads nothing heavy.
"""
