"""Lessons from the textbook, measured: gradient flow through time and the long-range tasks that separate the cells."""
