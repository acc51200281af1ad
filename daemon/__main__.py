"""``python -m daemon`` is the same as the ``facecluster`` command."""

from daemon.cli import main

raise SystemExit(main())
