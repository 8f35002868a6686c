"""Which ``Host`` headers the viewer answers: its defence against DNS rebinding.

A web page can point a name of its own (``127.0.0.1.nip.io``, ``127.attacker.example``)
at 127.0.0.1 and read the viewer from its scripts as if same-origin; the one sign of it
is the ``Host`` header, which carries that name. So while bound to loopback the viewer
answers only the exact names a browser uses to reach it there: the address it listens
on, or ``localhost``, each with its port. Any looser test (a ``127.`` prefix) is a name
an attacker can register.
"""

from __future__ import annotations

import ipaddress

LOCALHOST = "localhost"
DEFAULT_HTTP_PORT = 80  # a browser leaves this port out of the Host header


def is_loopback(host: str) -> bool:
    """Whether the address (or ``localhost``) to bind reaches this machine only."""
    if host.lower() == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str, port: int) -> frozenset[str] | None:
    """The ``Host`` values (lowercase) to answer when listening on ``bound``:``port``.

    ``None`` when bound beyond loopback: the viewer is then reachable under names it
    cannot know, and ``lunatrace ui`` has warned that anyone who reaches it reads it.
    """
    if not is_loopback(bound):
        return None
    address = f"[{bound}]" if ":" in bound else bound
    names = {address.lower(), LOCALHOST}
    hosts = {f"{name}:{port}" for name in names}
    if port == DEFAULT_HTTP_PORT:
        hosts |= names
    return frozenset(hosts)
