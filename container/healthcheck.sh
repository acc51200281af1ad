#!/bin/sh
# HEALTHCHECK: the service is running (its status file names a live process) and not
# stopping, as `facecluster status --json` reports it.
out=$(/usr/local/bin/facecluster status --json 2>/dev/null) || exit 1
printf '%s' "$out" | /opt/facecluster/venv/bin/python -c '
import json, sys
svc = json.load(sys.stdin).get("service")
if not svc or svc.get("phase") in ("stopping", "stopped"):
    sys.exit(1)
print(svc.get("message", ""))
'
