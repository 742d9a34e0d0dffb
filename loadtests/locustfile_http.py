"""Locust load test of deepserve's HTTP port, every answer checked: the Vision API's classify
(a PNG body) and KServe v2 infer (binary tensors).

    locust -f loadtests/locustfile_http.py --host localhost:8001 \\
        --http-url http://localhost:8000 --headless -u 16 -r 4 -t 60s --csv results/http

--host is the gRPC address, which the reference pass uses (each digit is sent once before the
load, and only those whose answer is known are kept); the options are locustfile.py's.
"""

from __future__ import annotations

from loadtests import locustfile as _shared  # noqa: F401  (options and the reference pass)
from loadtests.http_user import RestUser


class HttpUser(RestUser):
    """The HTTP port, with answers checked as the gRPC users' are."""

    def __init__(self, environment) -> None:
        url = environment.parsed_options.http_url
        if not url:
            raise RuntimeError("give --http-url (the server's HTTP port, e.g. http://host:8000)")
        self.host = url  # before FastHttpUser builds its client on it
        super().__init__(environment)
