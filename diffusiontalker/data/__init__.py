"""Data: the common clip format and Dataset (clips), the synthetic espeak-ng set, BEAT and VOCASET converters.

Import the submodules directly (``from diffusiontalker.data.clips import ClipDataset``); nothing heavy is loaded
here.
"""
