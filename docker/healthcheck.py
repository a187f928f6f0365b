"""Container health check: GET http://127.0.0.1:$HELPSEEK_PORT<path>, exit 0 on HTTP 200.

The slim image has no curl; the standard library is enough. Usage: healthcheck.py /healthz
"""

import os
import sys
import urllib.request

__all__: list[str] = []

if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    url = f"http://127.0.0.1:{os.environ.get('HELPSEEK_PORT', '8000')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            sys.exit(0 if response.status == 200 else 1)
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        sys.exit(1)
