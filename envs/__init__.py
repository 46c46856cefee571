"""Gymnasium environments of pope-env, imported as ``pope_env.envs``.

Env modules are imported lazily by Gymnasium through the entry points in
:mod:`pope_env.registration`; import a module directly to use its class.
"""
