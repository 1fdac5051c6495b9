"""Code that runs inside an endpoint.

Imports only the standard library and cloudpickle: this package is copied into every
archive, so a worker never depends on the Flash version installed where it runs.
"""
