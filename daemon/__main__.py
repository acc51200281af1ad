"""``python -m daemon`` is the same as the ``facecluster`` command."""

from daemon.cli import entry

entry()
