"""Experiments on top of the system and the agents: cached sweeps (:mod:`.runner`), the batched fast path
(:mod:`.batch`), metrics, each figure's experiment, plots and ``reproduce``.
"""
