"""orchlib's data files, installed as the package ``orchlib.data`` (see ``README.md`` here for provenance).

This folder is the single source: ``pyproject.toml`` maps it to ``orchlib.data`` so that wheels carry it, and
:func:`orchlib.system.profiles.data_dir` finds it with :func:`importlib.resources.files`.
"""
