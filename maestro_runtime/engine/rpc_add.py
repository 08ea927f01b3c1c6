"""An XML-RPC method inside supervisord: add one program group from its own file.

supervisord only knows the program files it read last (at its start-up or at a
``reloadConfig``), and a reread parses every file (~0.7 ms each). During boot each
service is added as soon as it is provisioned, so rereading all of them per service
would cost O(N^2); ``maestro.addProgram(name)`` parses ``<programs>/<name>.conf``
alone, with supervisord's own parser (the same config a reread would make, so a
later ``reloadConfig`` sees it unchanged), and adds the group. It never stops,
removes or restarts anything: a group supervisord already has (it read the file at
its start-up and started the program itself) is left as it is and the answer is
False. Served as ``maestro.addProgram`` by control/rpc.py's interface; supervisor + stdlib only.
"""

from __future__ import annotations

import os
import re

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")  # spec/naming.py's PROGRAM_ID_RE (not imported: lean)


class AddProgram:
    def __init__(self, supervisord, programs: str):
        self.supervisord = supervisord
        self.programs = programs

    def addProgram(self, name: str) -> bool:
        """Add program group ``name`` from its file; False when supervisord already has it."""
        from supervisor import xmlrpc
        from supervisor.options import UnhosedConfigParser

        if not isinstance(name, str) or not NAME_RE.match(name):
            raise xmlrpc.RPCError(xmlrpc.Faults.BAD_NAME, name)
        if name in self.supervisord.process_groups:
            return False
        path = os.path.join(self.programs, f"{name}.conf")
        options = self.supervisord.options
        parser = UnhosedConfigParser()
        parser.expansions = options.environ_expansions
        try:
            parser.read(path)  # a missing file reads as nothing
            parser.expand_here(os.path.abspath(self.programs))
            groups = [g for g in options.process_groups_from_parser(parser) if g.name == name]
        except ValueError as exc:
            raise xmlrpc.RPCError(xmlrpc.Faults.CANT_REREAD, f"{path}: {exc}") from None
        if not groups:
            raise xmlrpc.RPCError(xmlrpc.Faults.BAD_NAME, name)
        config = groups[0]
        # Known to supervisor.addProcessGroup and diff_to_active until the next full reread.
        options.process_group_configs = [g for g in options.process_group_configs if g.name != name] + [config]
        return bool(self.supervisord.add_process_group(config))
