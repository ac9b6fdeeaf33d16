"""What the framework side shares, below the backends, variants and pipelines that use it:
the Backend protocol with ``Prepared`` and ``Skip`` (:mod:`base`) and the TensorFlow import
shim (:mod:`tf_runtime`). Importing this package imports nothing; importing
:mod:`tf_runtime` imports TensorFlow (worker and probe processes only)."""
