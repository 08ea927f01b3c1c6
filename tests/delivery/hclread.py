"""Reading HCL the way Terraform does, for the delivery tests.

python-hcl2 parses the syntax and undoes the string escapes (\\" \\\\ \\n ...), but it
keeps HCL's template escapes ``$${`` and ``%%{`` literal; Terraform reads them as
``${`` and ``%{``. :func:`terraform_string` applies that last rule, so a test can
compare what Terraform would read with what was meant.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "iac" / "terraform"
TERRAFORM = shutil.which("terraform")
# No ~/.terraformrc here: an empty config keeps terraform from warning about it.
TF_ENV = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}


def load(path: Path) -> dict[str, Any]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)
    with path.open(encoding="utf-8") as handle:
        return _plain(hcl2.load(handle, serialization_options=options))


def _plain(value: Any) -> Any:
    """Without python-hcl2's bookkeeping keys (__is_block__, comments)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def terraform_string(value: str) -> str:
    """python-hcl2's string -> the string Terraform reads (template escapes undone)."""
    return re.sub(r"([$%])\1\{", r"\1{", value)


def unescape_all(value: Any) -> Any:
    if isinstance(value, str):
        return terraform_string(value)
    if isinstance(value, list):
        return [unescape_all(v) for v in value]
    if isinstance(value, dict):
        return {k: unescape_all(v) for k, v in value.items()}
    return value


def declared_variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in load(TF_DIR / "variables.tf").get("variable", []) for name, body in block.items()}


def terraform_console(expression: str, folder: Path, *var_files: Path) -> str:
    """Evaluate one expression with the real terraform (no provider needed, so no init)."""
    assert TERRAFORM is not None
    args = [TERRAFORM, "console", *(f"-var-file={f}" for f in var_files)]
    done = subprocess.run(args, input=expression + "\n", cwd=folder, env=TF_ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout
