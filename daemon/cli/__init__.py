"""Drive, by hand: the ``facecluster`` command line.

- :mod:`.commands` parses the command line and runs each subcommand (``main``);
- :mod:`.naming` the naming commands: ``name``, ``merge``, ``hide``, ``not``, ``people``;
- :mod:`.firstrun` makes the watched folders on the first ``make run``;
- :mod:`.progress` the terminal progress bar of ``scan``;
- :mod:`.rebuild` ``facecluster rebuild``: a new store from the photos;
- :mod:`.inbox` ``facecluster import ARCHIVE.zip``.
"""

from daemon.cli.commands import entry, main

__all__ = ["entry", "main"]
