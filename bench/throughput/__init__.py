"""The indexing throughput bench, by job: ``corpora`` (the photos), ``runs`` (our pipeline,
in-process and as the whole ``facecluster scan`` command), ``baseline`` (face_recognition),
``recall`` (YuNet recall against detection size), ``report`` (the tables and the load
check), ``cli`` (the modes). Run it as ``bench/index_throughput.py``."""
