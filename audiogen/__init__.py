"""audiogen: raw-audio piano music generation.

Importing the package is cheap and offline: submodules (torch models, librosa, soundfile) are
imported where they are used.
"""

__version__ = "0.1.0"
