"""audiogen: raw-audio piano music generation.

Importing the package is cheap and offline: submodules (torch models, librosa, soundfile) are
imported where they are used.
"""

__version__ = "0.3.0"

__all__ = ["Generator", "__version__"]


def __getattr__(name: str):
    # `from audiogen import Generator` loads torch and the models' code only when asked for
    if name == "Generator":
        from audiogen.api import Generator

        return Generator
    raise AttributeError(f"module 'audiogen' has no attribute {name!r}")
