"""Batch scoring and evaluation of files too large for one request or one process, on Dask.

``python -m service.batch score|evaluate``: see :mod:`service.batch.cli`. The service
core is reached only through :mod:`service.batch.adapter`.
"""
