"""Orchestrators: the agent interface (:mod:`.base`), one module per algorithm family, the catalogue
(:mod:`.catalogue`) and the clairvoyant oracle (:mod:`.oracle`).

Imports only :mod:`orchlib.system` and :mod:`orchlib.envs`.
"""
