"""Serves one OpenStack WSGI app (Keystone or Glance) on 127.0.0.1 for the local test bed.

Started by stack/openstack.sh. Configured only through the environment, because the apps
parse sys.argv with oslo.config when imported (any argument of ours would crash them):
  WSGI_APP   module:attribute, e.g. keystone.wsgi.api:application
  WSGI_PORT  TCP port on 127.0.0.1
Command-line arguments are ignored; openstack.sh passes a name and its state dir only so that
the process can be recognised (and stopped) after a crash that left stale pid files.
"""

import importlib
import os
import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class QuietHandler(WSGIRequestHandler):
    def address_string(self):  # no reverse DNS lookups
        return self.client_address[0]


def main():
    module_name, _, attr = os.environ["WSGI_APP"].partition(":")
    port = int(os.environ["WSGI_PORT"])
    sys.argv = sys.argv[:1]  # oslo.config must not see our arguments
    app = getattr(importlib.import_module(module_name), attr or "application")
    server = make_server("127.0.0.1", port, app, ThreadingWSGIServer, QuietHandler)
    print(f"wsgi_serve: {os.environ['WSGI_APP']} listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
