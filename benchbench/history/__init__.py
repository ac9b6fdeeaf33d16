"""What happens to records after a run: the history store (:mod:`store`), regression
verdicts between runs and over history (:mod:`compare`, :mod:`robust`), change points
(:mod:`changepoints`), the interleaved A/B confirm step (:mod:`ab`) and exports to other
tools' formats (:mod:`exports`). Never imports a framework or the worker side."""
