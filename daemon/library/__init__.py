"""Decide: which files under the watched folders make the photo library.

- :mod:`.photos` which files are photos to index and which are ignored;
- :mod:`.roots` whether a watched folder is really there (an unmounted share is not).
"""
