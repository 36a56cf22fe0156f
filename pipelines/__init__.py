"""Runnable jobs that compose library calls: ``run(...) -> report`` and ``main(argv) -> int``."""
