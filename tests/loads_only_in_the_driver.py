"""A node module that imports in the driving process but not in a worker process (as one that needs
something only the driving process has would): the process runner's attempts fail, saying so."""
import multiprocessing

if multiprocessing.parent_process() is not None:
    raise RuntimeError("this module refuses to load in a worker process")


def echo(value):
    return value
