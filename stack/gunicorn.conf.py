"""gunicorn settings for Keystone and Glance in the local test bed (used by stack/openstack.sh,
which passes the per-service ones as flags: name, address, worker and thread counts).

Each worker imports the app itself through stack/wsgi_app.py (no preloading in the master, like
OpenStack's uwsgi deployments with lazy-apps): the apps open database connections and start
threads when imported, which must not be shared across fork().
"""

import os

worker_class = "gthread"
timeout = 120  # a worker busy this long (its heartbeat, not one request) is restarted
graceful_timeout = 5
# Idle keep-alive connections stay open longer than clients keep them in their pools (reqwest:
# 90 s). With gunicorn's 2 s, a client reusing a connection just as the server closes it gets
# "connection closed before message completed" on a request Glance never saw.
keepalive = 120
control_socket_disable = True  # it would sit at one path in $HOME for every gunicorn
errorlog = "-"
accesslog = "-"
access_log_format = '%(t)s "%(r)s" %(s)s %(b)s %(M)sms pid=%(p)s'


def worker_int(worker):
    """Quick shutdown (SIGINT/SIGQUIT, what stack/down.sh sends): the test bed's state is thrown
    away, so skip the interpreter's clean-up of a large app, which takes seconds of CPU."""
    os._exit(0)
