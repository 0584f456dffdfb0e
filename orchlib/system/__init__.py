"""The modelled world, bottom layer: scenario configuration, data loaders, latency formulas and the simulator.

Nothing here imports from another orchlib layer.
"""
