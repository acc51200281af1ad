"""Finishing a library with a few answers: "are these two the same person?".

- :mod:`.answers` turns the answers kept in labels.toml into constraints on a clustering;
- :mod:`.questions` chooses and orders the questions by expected gain;
- :mod:`.session` asks them of a store and records answers;
- :mod:`.picture` draws a question's two sides side by side;
- :mod:`.command` is ``facecluster review`` (terminal, ``--json``, ``answer``).
"""
