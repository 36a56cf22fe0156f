"""recsys: the precision push engine for science-popularization content.

Decides who gets which science content, on which channel, tonight.
"""

from __future__ import annotations

__version__ = "0.1.0"
