"""Input pipelines and data augmentation (issue 10), and the package data (devices.yaml).

Framework-free here: :mod:`config` (a case's ``data:``), :mod:`generate` (seeded
synthetic JPEG class folders), :mod:`bound` (which side sets the pace). The pipelines
import their framework: :mod:`torch_pipeline` (torch only), :mod:`tf_pipeline`
(tensorflow only — never torch: the two in one process segfault here), and
:mod:`hook` glues a pipeline to a worker.
"""
