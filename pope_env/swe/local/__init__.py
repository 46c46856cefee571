"""Data of the built-in local SWE set: ``instances.jsonl`` and ``trajectories.jsonl``.

Made by ``python -m pope_env.swe.local.generate`` from the drafts in ``drafts.toml`` (read
by ``drafts.py``); load them with :func:`pope_env.swe.load_instances` (``"local"``) and
:func:`pope_env.swe.load_trajectory`.
"""
