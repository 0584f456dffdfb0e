"""MobileNetV1 variants in torch (:mod:`.mobilenet`) and the profiler that measures them on this machine
(:mod:`.profiler`). Independent of the other layers.
"""
