"""Schedule-aware loss-curve laws: the loss at every step of a run from its learning-rate schedule.

``schedule`` rebuilds the per-step LR (from a schedule description or the logged LR), ``areas`` computes
the LR sums the laws are made of, ``laws`` holds the forms (Multi-Power Law, LR-annealing law) and their
registry, ``fit`` the global Huber fit with intervals, ``csv`` the command-line front end. Pure Python.
"""
