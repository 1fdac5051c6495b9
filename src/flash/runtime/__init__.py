"""Code that runs inside an endpoint.

Imports only the standard library and cloudpickle: this package is copied into every
archive, so a worker never depends on the Flash version installed where it runs.
"""

import sys as _sys

if _sys.flags.no_site:
    # A served worker runs with -S (its archive alone on sys.path, as on Flash's image);
    # the builtins site would add are there on the image, so code may call exit() or help().
    import site as _site

    _site.setquit()
    _site.setcopyright()
    _site.sethelper()
