"""The gateway's read models, all in this folder (one protocol: base.py).

- views (pure, no I/O): ``activity`` (the activity log and its indexes), ``systems``
  (lifecycle, heartbeats, the lease, instances), ``soc`` (alerts with their indexes, the
  ML models), ``jobs``, ``factory``, ``advisories``;
- sources (the I/O, on the runtime's stream reader): ``feed`` (AOC_EVENTS read once for
  every view; heartbeats; verdicts; KV buckets);
- ``snapshot`` (consistent cuts to the object store, loaded at start), ``history`` (the
  activity log below the window, from the stream), ``index`` (the lists that make a
  filtered page cost what it returns), ``registry`` (``ReadModels``: all of them, typed).
"""
