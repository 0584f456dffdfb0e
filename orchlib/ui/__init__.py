"""Notebook widgets: plain functions from settings to figures, and the ipywidgets panels that call them.

Top layer: may import every other layer.
"""
