"""Scripted regression scenarios: `xen970 test`, `xen970 sweep` and the pytest plugin.

One concept per module:

- `collect`: which scenario files are tests, and their xm-test groups;
- `job`: one scenario judged (PASS, FAIL, XPASS, XFAIL, SKIP, TIMEOUT), with its run
  directory packed as bytes so a worker needs no shared file system;
- `engine`: the Dask cluster that runs jobs (a local one by default, or `--scheduler`);
- `report`: the xm-test style report and the JUnit XML file;
- `fingerprints`: `--update-fingerprints`, and the first record where two runs differ;
- `sweep`: parameter studies, the cross product of `--set` values and seeds;
- `pytest_plugin`: scenario files with `expect:` collected as pytest items.
"""
