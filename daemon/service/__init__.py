"""Drive, on its own: the long-running service that keeps the albums current.

- :mod:`.loop` ``facecluster run``: the main loop;
- :mod:`.schedule` its timing rules (re-cluster, rescan, albums, labels and config checks);
- :mod:`.work` one batch of watcher events sorted into work for the pipeline;
- :mod:`.status` ``service.json``, the phase, and the systemd status lines;
- :mod:`.sdnotify` systemd's notify protocol; :mod:`.lock` one service per state dir;
- :mod:`.priority` lower CPU and I/O priority; :mod:`.filewatch` noticing one file change.
"""
