"""The facts about one audited API call, captured on the request path.

An ``Exchange`` is filled in three places, all cheap: classification (route and a
shallow copy of the environ, taken before the app can rewrite ``PATH_INFO``),
``start_response`` (status and headers) and the body wrappers (byte counts, a
bounded reference to a small JSON response body).  Everything expensive (parsing,
look-ups, building events) happens later, in the sender, from these facts.
"""

from __future__ import annotations

import time

# Phases of an exchange that produce events.
STARTED = 'started'      # an upload began (the app read the request body)
FINISHED = 'finished'    # the response is complete, or the client went away

# Largest response body kept (by reference, never copied) for event building.
MAX_BODY = 64 * 1024


class Exchange:
    __slots__ = ('route', 'params', 'environ', 'started_at', 'finished_at',
                 'status', 'headers', 'body', 'bytes_sent', 'completed',
                 'bytes_received', 'upload_started', 'raised', 'prefetched')

    def __init__(self, route, params: dict, environ: dict):
        self.route = route
        self.params = params
        # A shallow copy: downstream apps rewrite PATH_INFO/SCRIPT_NAME in place.
        self.environ = environ.copy()
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.status: str | None = None
        self.headers: list | None = None
        self.body: list | None = None
        self.bytes_sent = 0
        self.completed = False
        self.bytes_received = 0
        self.upload_started = False
        self.raised: str | None = None
        self.prefetched = None

    @property
    def status_code(self) -> int | None:
        if self.status is None:
            return None
        try:
            return int(self.status.split(None, 1)[0])
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        """A response header (case-insensitive), or None."""
        if not self.headers:
            return None
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def request_path(self) -> str:
        env = self.environ
        return env.get('SCRIPT_NAME', '') + env.get('PATH_INFO', '')
