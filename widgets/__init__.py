"""Interactive ipywidgets panels for the GRU Workbench.

Panels are thin: controls are read into a config, one ``workbench`` call does the work, and a
``workbench.figures`` builder draws the result. They come with the panel work; this package
imports nothing yet, so importing it stays cheap and never loads ipywidgets by itself.
"""
