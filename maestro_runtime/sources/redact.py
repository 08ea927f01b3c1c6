"""The one redaction of credentials in URLs, for everything shown: records, errors, list-services,
the boot report and logs. Stdlib only and pure (the launcher and list-services import it).

Works on any text, not just a bare URL: an error message or a log line with URLs in it comes out
with every ``user:secret@`` and every secret-looking query (or fragment) value replaced by ``***``.
"""

from __future__ import annotations

import re

MASK = "***"
# Userinfo of any URL: scheme://user[:password]@host, up to the authority's last "@" (as URL
# parsers read it: a password may hold an unencoded "@", and every character of it is secret).
_USERINFO = re.compile(r"(?<=://)[^/?#\s\"'<>]*@")
# A parameter whose name looks like it carries a secret, case-insensitive: token, access_token,
# password, api_key, client_secret, auth, credential, sig / signature (X-Amz-Signature,
# X-Goog-Signature, X-Amz-Credential, X-Amz-Security-Token...). Over-redaction is harmless.
_SECRET_NAME = r"[^=&#\s?;\"'<>]*(?:token|passw|pwd|key|secret|auth|credential|sig|session)[^=&#\s?;\"'<>]*"
# The value ends where the URL does, also inside JSON or quotes ("...?token=x", 'x').
_SECRET_PARAM = re.compile(rf"(?i)([?&;#]{_SECRET_NAME}=)[^&#\s;\"'<>]*")


def redact(text: str) -> str:
    """``text`` without the credentials of any URL in it."""
    return _SECRET_PARAM.sub(rf"\g<1>{MASK}", _USERINFO.sub(f"{MASK}@", text))
