"""WSGI entry point through which gunicorn serves Keystone or Glance for the local test bed.

Started by stack/openstack.sh as `gunicorn ... wsgi_app:application`, with the real app named in
the environment:
  WSGI_APP   module:attribute, e.g. keystone.wsgi.api:application
The apps parse sys.argv with oslo.config when they are imported, and in a gunicorn worker
sys.argv is gunicorn's own command line, which oslo.config rejects ("unrecognized arguments"):
so this module clears it before importing the app. Every gunicorn worker imports this module
(and so the app) itself; nothing is loaded in the master process.
"""

import importlib
import os
import sys

sys.argv = sys.argv[:1]  # oslo.config must not see gunicorn's arguments
_module, _, _attr = os.environ["WSGI_APP"].partition(":")
application = getattr(importlib.import_module(_module), _attr or "application")
