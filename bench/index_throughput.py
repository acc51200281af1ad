"""Indexing throughput against face_recognition: the entry point of ``bench/throughput/``
(see ``bench/throughput/cli.py`` for the modes and ``bench/THROUGHPUT.md`` for the runs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's bench, daemon

from bench.throughput.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
