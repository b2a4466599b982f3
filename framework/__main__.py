"""`python -m framework` is the `xen970` command."""

from framework.cli import main

raise SystemExit(main())
