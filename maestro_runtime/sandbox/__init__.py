"""Confinement of services and builds.

``policy`` (bubblewrap argv, the probe, what provisioning asks for, ``run``), ``cgroups``
(limits where the cgroup tree is writable), ``netpolicy`` (allowlists, pure), ``firewall``
(iptables rules for egress), ``proxy`` (the allowlisting CONNECT proxy), ``cli`` (the
``maestro-sandbox`` command builds run through).
"""
