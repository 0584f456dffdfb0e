"""The Gymnasium view of the system: what an orchestrator observes, decides and is rewarded for.

Imports only :mod:`orchlib.system`.
"""
