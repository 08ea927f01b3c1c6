"""The pure core of batch account creation (ops/userdb.py): parsing, allocation, rendering.
Expected ids and lines are those shadow 4.13's useradd --system --user-group writes (checked
against the real useradd in tests/integration/test_userdb_real.py)."""

from __future__ import annotations

import pytest

from maestro_runtime.ops import userdb
from maestro_runtime.ops.userdb import Invalid, NewAccount, Ranges, Unusual

DEBIAN_DEFS = """# /etc/login.defs
UID_MIN			 1000
UID_MAX			60000
# System accounts
#SYS_UID_MIN		  100
#SYS_UID_MAX		  999
GID_MIN			 1000
"""
RANGES = Ranges(101, 999, 101, 999)


def never(_: int) -> bool:
    return False


def tables(passwd="", group="", shadow="", gshadow=""):
    return {kind: userdb.parse(kind, text) for kind, text in
            (("passwd", passwd), ("group", group), ("shadow", shadow), ("gshadow", gshadow))}


def test_login_defs_defaults_and_debian_file():
    assert userdb.ranges_from_login_defs("") == RANGES
    assert userdb.ranges_from_login_defs(DEBIAN_DEFS) == RANGES  # commented SYS_* lines: defaults
    assert userdb.ranges_from_login_defs("UID_MIN 500\nGID_MIN 2000\n") == Ranges(101, 499, 101, 1999)
    assert userdb.ranges_from_login_defs("SYS_UID_MIN 0x10\nSYS_UID_MAX 0100\nSYS_GID_MIN 0\n") == \
        Ranges(16, 64, 1, 999)  # strtoul base 0; a minimum of 0 is raised to 1 like shadow


@pytest.mark.parametrize("text", ["SYS_UID_MAX lots\n", "SYS_UID_MIN 900\nSYS_UID_MAX 800\n"])
def test_login_defs_unusual(text):
    with pytest.raises(Unusual, match=r"login\.defs"):
        userdb.ranges_from_login_defs(text)


def test_parse_keeps_lines_and_reads_ids():
    table = userdb.parse("passwd", "root:x:0:0:root:/root:/bin/bash\n\nsvc:x:998:997::/h:/bin/sh\n")
    assert table.lines == ("root:x:0:0:root:/root:/bin/bash", "", "svc:x:998:997::/h:/bin/sh")
    assert table.ids == {"root": (0, 0), "svc": (998, 997)} and table.names == {"root", "svc"}
    assert userdb.parse("group", "svc:x:997:a,b").ids == {"svc": (997, 997)}  # no final newline
    assert userdb.parse("shadow", "").lines == ()


@pytest.mark.parametrize("kind,line,why", [
    ("passwd", "+::::::", "NIS"),
    ("group", "-bad::0:", "NIS"),
    ("passwd", "a:x:1:1:gecos:/h", "does not parse"),  # 6 fields
    ("passwd", "a:x:1:1:gecos:/h:/sh:extra", "does not parse"),
    ("passwd", "a:x:one:1::/h:/sh", "id field"),
    ("passwd", "a:x:-1:1::/h:/sh", "id field"),
    ("group", "g:x::", "id field"),
    ("shadow", "a:!:1::::", "does not parse"),
    ("gshadow", ":!::", "does not parse"),  # no name
    ("passwd", "a:x:1:1::/h:/bin/sh\r", "does not parse"),  # CRLF file
])
def test_parse_refuses_odd_lines(kind, line, why):
    with pytest.raises(Unusual, match=why):
        userdb.parse(kind, f"root:x:0:0::/root:/bin/sh\n{line}\n" if kind == "passwd" else f"{line}\n")


def test_find_new_id_goes_down_from_the_lowest_in_use():
    assert userdb.find_new_id(set(), 101, 999, never) == 999
    assert userdb.find_new_id({0, 65534, 997, 995, 1000}, 101, 999, never) == 994
    # lowest in use is the minimum: from the top down, skipping ids in use
    assert userdb.find_new_id({101, 999, 998}, 101, 999, never) == 997
    # ids NSS knows (LDAP, systemd...) are skipped as well
    assert userdb.find_new_id({995}, 101, 999, lambda i: i in (994, 993)) == 992


def test_find_new_id_uses_gaps_last_and_none_when_full():
    assert userdb.find_new_id({101, 102, 104}, 101, 104, never) == 103
    assert userdb.find_new_id(set(range(101, 105)), 101, 104, never) is None
    assert userdb.find_new_id(set(), 101, 104, lambda i: True) is None
    assert userdb.find_new_id(set(), 65530, 65535, never) == 65534  # 65535 is never handed out


def test_plan_gid_equals_uid_when_free():
    result = userdb.plan([NewAccount("svc_a", "/srv/h/svc_a")], tables(), RANGES, 20787,
                         uid_taken=never, gid_taken=never)
    assert result.created == {"svc_a": (999, 999)}
    assert result.texts["passwd"] == "svc_a:x:999:999:maestro service:/srv/h/svc_a:/usr/sbin/nologin\n"
    assert result.texts["shadow"] == "svc_a:!:20787::::::\n"
    assert result.texts["group"] == "svc_a:x:999:\n"
    assert result.texts["gshadow"] == "svc_a:!::\n"


def test_plan_gid_taken_gets_the_next_group_id_like_useradd():
    # This machine's case: uid 991 free, gid 991 used by _runit-log: useradd gave 991/990.
    t = tables(passwd="_runit-log:x:992:991::/nonexistent:/usr/sbin/nologin\n", group="_runit-log:x:991:\n")
    result = userdb.plan([NewAccount(n, f"/h/{n}") for n in ("svc_a", "svc_b", "svc_c")], t, RANGES, 1,
                         uid_taken=never, gid_taken=never)
    assert result.created == {"svc_a": (991, 990), "svc_b": (990, 989), "svc_c": (989, 988)}
    # a gid NSS knows is not taken either
    result = userdb.plan([NewAccount("svc_a", "/h")], tables(), RANGES, 1, uid_taken=never,
                         gid_taken=lambda g: g == 999)
    assert result.created == {"svc_a": (999, 998)}


def test_plan_in_one_batch_equals_one_account_at_a_time():
    start = tables(passwd="a:x:990:990::/:/bin/sh\nb:x:995:1::/:/bin/sh\n", group="a:x:990:\nx:x:989:\n")
    names = [f"svc_{i}" for i in range(6)]
    batch = userdb.plan([NewAccount(n, "/h") for n in names], start, RANGES, 5, uid_taken=never,
                        gid_taken=never)
    state, one_by_one = start, {}
    for name in names:
        step = userdb.plan([NewAccount(name, "/h")], state, RANGES, 5, uid_taken=never, gid_taken=never)
        one_by_one.update(step.created)
        state = {kind: userdb.parse(kind, text) for kind, text in step.texts.items()}
    assert batch.created == one_by_one
    assert batch.texts == {kind: userdb.render(table, ()) for kind, table in state.items()}


def test_plan_existing_clashing_and_full_range():
    t = tables(passwd="svc_old:x:900:900::/h:/bin/sh\n", group="svc_grp:x:901:\n", shadow="svc_sh:!:1::::::\n")
    result = userdb.plan([NewAccount(n, "/h") for n in ("svc_old", "svc_grp", "svc_sh", "svc_new", "svc_new")],
                         t, RANGES, 1, uid_taken=never, gid_taken=never)
    assert result.existing == {"svc_old": (900, 900)}
    assert set(result.fallback) == {"svc_grp", "svc_sh"} and "group" in result.fallback["svc_grp"]
    assert result.created == {"svc_new": (899, 899)}  # once, though asked twice
    full = userdb.plan([NewAccount("svc_x", "/h")], tables(), Ranges(101, 102, 101, 102), 1,
                       uid_taken=lambda u: True, gid_taken=never)
    assert full.created == {} and full.texts == {} and "no free uid" in full.fallback["svc_x"]


def test_plan_keeps_hostile_and_foreign_lines_as_they_are():
    odd = "weird:x:5:5:caf\udce9 \\ ; $(x):/h:/bin/sh"  # a Latin-1 byte, shell characters
    result = userdb.plan([NewAccount("svc_a", "/h")], tables(passwd=f"{odd}\n\n"), RANGES, 0,
                         uid_taken=never, gid_taken=never)
    assert result.texts["passwd"].split("\n")[:2] == [odd, ""]
    assert result.texts["shadow"] == "svc_a:!:::::::\n"  # day 0: lastchg -1, written empty


@pytest.mark.parametrize("name,home", [
    ("svc:x", "/h"), ("svc\nroot", "/h"), ("Root", "/h"), ("-rf", "/h"), ("a" * 33, "/h"),
    ("svc", "/h:/bin/sh"), ("svc", "/h\nx:x:0:0::/:/bin/sh"), ("svc", "relative"),
])
def test_fields_that_could_forge_a_line_are_refused(name, home):
    with pytest.raises(Invalid):
        userdb.check_fields(NewAccount(name, home))
    with pytest.raises(Invalid):
        userdb.plan([NewAccount(name, home)], tables(), RANGES, 1, uid_taken=never, gid_taken=never)
