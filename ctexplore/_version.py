"""The package version, in a module of its own so that every module can import it.

``from . import __version__`` fails when the package is imported as a namespace package,
which happens when Python runs in the folder that holds a clone named ``ctexplore`` (the
clone shadows an editable install); a submodule import still finds the real files.
"""

__version__ = "0.1.0"
