"""Confinement of services and builds.

``bwrap`` (typed config, the system view, argv building, the probe), ``policy`` (what
provisioning asks for, the boot report; the subsystem's surface), ``runner`` (one sandboxed
command with its network policy), ``cgroups``
(limits where the cgroup tree is writable), ``netpolicy`` (allowlists, pure), ``firewall``
(iptables rules for egress), ``proxy`` (the allowlisting CONNECT proxy), ``cli`` (the
``maestro-sandbox`` command builds run through).
"""
