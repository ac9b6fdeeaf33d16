"""Input pipelines and data augmentation (issue 10); a case's ``data:`` itself is
:mod:`benchbench.data_spec`.

Framework-free here: :mod:`generate` (seeded synthetic JPEG class folders, learnable by
construction), :mod:`split` (mode fit's seeded, stable train/validation split), :mod:`tabular`
(scikit-learn's bundled data sets as arrays), :mod:`presets`
(each builder imports its framework inside); which side sets the pace is
:mod:`benchbench.measure.bound`.
The pipelines import their framework: :mod:`torch_pipeline` (torch only),
:mod:`tf_pipeline` (tensorflow only — never torch: the two in one process segfault here),
and :mod:`hook` glues a pipeline to a worker.
"""
