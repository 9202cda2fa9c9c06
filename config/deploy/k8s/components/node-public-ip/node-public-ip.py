"""Exec a command with this node's public address in an environment variable.

`python node-public-ip.py VARIABLE TEMPLATE COMMAND...`: reads the node's public IPv4 address
from the cloud's metadata server, sets VARIABLE to TEMPLATE with `{ip}` (and `{node_ip}`, the
NODE_IP variable) filled in, then replaces itself with COMMAND, which gets the signals.

For nodes behind a 1:1 NAT, whose public address the Kubernetes downward API cannot give
(it knows status.hostIP, the internal one). Defaults to Google Compute Engine (GKE); set
PUBLIC_IP_URL (and PUBLIC_IP_HEADER, "Name: value") for another cloud's metadata endpoint."""

import ipaddress
import os
import sys
import urllib.request

GCE = "http://metadata.google.internal/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip"


def public_ip() -> str:
    url = os.environ.get("PUBLIC_IP_URL") or GCE
    header = os.environ.get("PUBLIC_IP_HEADER") or "Metadata-Flavor: Google"
    name, _, value = header.partition(":")
    request = urllib.request.Request(url, headers={name.strip(): value.strip()})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read(64).decode().strip()
        return str(ipaddress.IPv4Address(text))
    except (OSError, ValueError) as exc:
        sys.exit(f"node-public-ip: no public IPv4 address for this node from {url}: {exc}")


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit("usage: node-public-ip.py VARIABLE TEMPLATE COMMAND...")
    variable, template, *command = sys.argv[1:]
    os.environ[variable] = template.format(ip=public_ip(), node_ip=os.environ.get("NODE_IP", ""))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
