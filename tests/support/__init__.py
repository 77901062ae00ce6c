"""Shared test helpers: CADF validation with pycadf, Ceilometer's view of
notifications, and secret scanning.  Import as ``from tests.support import cadf``
(the repository root must be on ``sys.path``; the conftests put it there).
"""
