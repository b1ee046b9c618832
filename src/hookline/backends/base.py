"""Kept for code written against hookline 0.1: the Task protocol lives in
:mod:`hookline.engine.task`."""

from hookline.engine.task import Stage, Task

__all__ = ["Stage", "Task"]
