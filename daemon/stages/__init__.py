"""The pipeline's stages, one module per job, named after the README's stages.

:mod:`~daemon.stages.sync` brings the store up to date with the photos on disk,
:mod:`~daemon.stages.people` groups faces into people and steers them by labels.toml,
:mod:`~daemon.stages.reflect` turns people into the album tree, and
:class:`~daemon.stages.pipeline.Pipeline` composes them; data flows one way, from sync
through people to reflect.
"""
