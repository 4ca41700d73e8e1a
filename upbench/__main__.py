"""``python -m upbench``: the command-line interface (see :mod:`upbench.cli`)."""

from upbench.cli import main

raise SystemExit(main())
