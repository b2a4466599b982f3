"""A hostile guest: random hypercalls and instruction words from a domain, with an oracle.

What it checks (issue 14): nothing a guest passes or executes can raise a Python exception
out of Xen (`hcall.bug`, a `SimulationError` or anything else escaping the run), hang the
simulator or stop simulated time, or change a byte of machine memory the fuzzing domain
does not own and was not granted: other domains' frames, Xen's own, their hashed page
tables and TCE tables.

- `program` (with `layout` and `ppc`): the fuzzing domain's code, built as machine words:
  each call loads r3..r11 from a table and executes a real `sc 1`, so Xen's entry checks
  run as for any guest; `ppc` also decides which random words it may execute.
- `calls` (with `call`, `values` and `world`): the call generator, biased toward the
  interesting values of the running machine (domain ids, addresses, frames, grant
  references, ports, sub-op numbers, PAPR arguments); calls are plain data, replayable.
- `oracle`: who owns each machine frame, hashed before and after every batch.
- `session`: a booted machine with victims quiesced, the fuzzing domain and batches.
- `hostile_guest`: the campaign command (`python -m fuzz.hostile_guest`).
"""
