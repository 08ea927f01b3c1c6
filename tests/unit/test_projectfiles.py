"""ProjectFiles: one look at a project folder per provisioning step, each file read once,
every read through safefs exactly as read_text does (links, FIFOs, oversize refused)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from maestro_runtime.sources import projectfiles
from maestro_runtime.sources.declared import declared_web, procfile, service_env
from maestro_runtime.sources.detect import NoStartCommand, detect_command
from maestro_runtime.sources.projectfiles import ProjectFiles, read_text


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_names_are_the_top_of_the_folder_and_absent_files_are_none(tmp_path):
    folder = project(tmp_path, {"Procfile": "web: x\n", "sub/app.py": "print(1)\n"})
    files = ProjectFiles.take(folder)
    assert files.names == {"Procfile", "sub"}
    assert files.text("Procfile") == "web: x\n"
    assert files.text("package.json") is None
    assert files.text("sub/app.py") == "print(1)\n", "a path below the top is read too"


def test_each_file_is_read_once_and_absent_names_are_not_looked_at(tmp_path, monkeypatch):
    folder = project(tmp_path, {"Procfile": "web: gunicorn app:app\nworker: python w.py\n", "index.html": ""})
    reads: list[str] = []
    real = projectfiles.read_text
    monkeypatch.setattr(projectfiles, "read_text", lambda d, p: reads.append(p.name) or real(d, p))
    files = ProjectFiles.take(folder)
    for _ in range(3):
        assert declared_web(files).command == "gunicorn app:app"
        assert procfile(files)["worker"] == "python w.py"
    service_env(files, {}, "app")
    assert reads == ["Procfile"], "read once; railway/render/nixpacks/.env absent from the listing: no read"


def test_a_symlinked_procfile_is_refused_as_read_text_refuses_it(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("web: cat /etc/shadow\n")
    folder = project(tmp_path, {"index.html": ""})
    (folder / "Procfile").symlink_to(secret)
    files = ProjectFiles.take(folder)
    assert "Procfile" in files.names
    assert files.text("Procfile") is None
    assert read_text(folder, folder / "Procfile") is None
    assert procfile(files) == {}
    assert detect_command(files).reason == "detected: static site"


def test_a_fifo_is_never_read_and_never_blocks(tmp_path):
    folder = project(tmp_path, {"index.html": ""})
    for name in ("Procfile", "package.json", "render.yaml"):
        os.mkfifo(folder / name)
    files = ProjectFiles.take(folder)
    assert [files.text(n) for n in ("Procfile", "package.json", "render.yaml")] == [None, None, None]
    assert detect_command(files).reason == "detected: static site"


def test_an_oversized_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(projectfiles, "READ_LIMIT", 16)
    folder = project(tmp_path, {"Procfile": "web: " + "x" * 64 + "\n"})
    assert ProjectFiles.take(folder).text("Procfile") is None


@pytest.mark.parametrize("kind", ["link", "missing", "file"])
def test_a_folder_reached_through_a_link_or_missing_has_no_names(tmp_path, kind):
    real = project(tmp_path, {"Procfile": "web: x\n"})
    folder = tmp_path / "other"
    {"link": lambda: folder.symlink_to(real), "missing": lambda: None,
     "file": lambda: folder.write_text("")}[kind]()
    files = ProjectFiles.take(folder)
    assert files.names == frozenset()
    assert files.text("Procfile") is None


def test_a_new_look_sees_changes_the_old_one_does_not(tmp_path):
    """The memo is one step's: a build that writes a Procfile is seen by the look taken after it."""
    folder = project(tmp_path, {"index.html": ""})
    before = ProjectFiles.take(folder)
    assert before.text("Procfile") is None
    (folder / "Procfile").write_text("web: python3 serve.py\n")
    assert before.text("Procfile") is None
    assert ProjectFiles.take(folder).text("Procfile") == "web: python3 serve.py\n"


def test_parsed_documents_are_parsed_once_and_bad_ones_are_none(tmp_path):
    folder = project(tmp_path, {"a.json": '{"k": 1}', "b.json": "{"})
    files = ProjectFiles.take(folder)
    calls: list[str] = []

    def parse(text: str):
        calls.append(text)
        return json.loads(text)

    assert files.doc("a.json", parse, ValueError) == {"k": 1}
    assert files.doc("a.json", parse, ValueError) == {"k": 1}
    assert files.doc("b.json", parse, ValueError) is None
    assert files.doc("c.json", parse, ValueError) is None
    assert calls == ['{"k": 1}', "{"]


def test_matching_is_path_glob(tmp_path):
    folder = project(tmp_path, {"requirements.txt": "", "requirements-dev.txt": "", ".requirements.txt": "",
                                "x.py": "", ".y.py": "", "README": ""})
    files = ProjectFiles.take(folder)
    for pattern in ("requirements*.txt", "*.py"):
        assert files.matching(pattern) == sorted(p.name for p in folder.glob(pattern))


def test_files_nested_past_the_parsers_depth_read_as_invalid_not_as_an_internal_error(tmp_path):
    # A service's own platform files: json, tomllib and yaml raise RecursionError on deep nesting,
    # which reached the boot as "internal error: RecursionError" naming no file.
    deep_json, deep_toml = "[" * 100_000 + "]" * 100_000, "a = " + "[" * 50_000 + "]" * 50_000 + "\n"
    deep_yaml = "a: " + "[" * 50_000 + "]" * 50_000 + "\n"
    folder = project(tmp_path, {"index.html": "<h1>x</h1>", "railway.json": deep_json, "railway.toml": deep_toml,
                                "render.yaml": deep_yaml, "nixpacks.toml": deep_toml, "pyproject.toml": deep_toml,
                                ".do/app.yaml": deep_yaml})
    detection = detect_command(folder)  # the nested files count as invalid; index.html makes it static
    assert "http.server" in detection.command, detection
    (folder / "package.json").write_text(deep_json)
    with pytest.raises(NoStartCommand, match=r"package\.json"):  # the one-line error of a package.json it cannot use
        detect_command(folder)


def test_a_build_log_is_read_from_its_end_only(tmp_path):
    # A failed step quotes the log's last lines: one 20 MB line was read whole, and quoted whole.
    from maestro_runtime.ops.logs import tail_bytes
    from maestro_runtime.sources.buildplan import tail
    from maestro_runtime.sources.buildrun import QUOTED_END

    log = tmp_path / "x.build.log"
    log.write_bytes(b"# header\n" + b"A" * 20_000_000 + b"\n$ pip install\nERROR: it broke\n")
    end = "\n".join(tail_bytes(log, QUOTED_END, keep_cut=True))
    assert len(end) <= 64 * 1024 and end.endswith("ERROR: it broke")
    assert tail(end).splitlines()[-2:] == ["$ pip install", "ERROR: it broke"]
    assert tail_bytes(tmp_path / "missing") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="root links and chowns another owner's file")
def test_a_hard_link_to_a_file_the_folders_owner_does_not_own_is_not_read(tmp_path):
    # Where fs.protected_hardlinks is off a service can link root's files into its folder.
    folder = project(tmp_path, {"Procfile": "web: python app.py\n", "own.txt": "x"})
    os.chown(folder, 12345, 12345)
    secret = tmp_path / "secret.env"
    secret.write_text("SECRET_TOKEN=root-only\n")
    secret.chmod(0o600)
    os.link(secret, folder / ".env")
    assert read_text(folder, folder / ".env") is None
    assert "SECRET_TOKEN" not in service_env(folder, {}, "app")
    os.chown(folder / "own.txt", 12345, 12345)  # the owner's own file with a second link: still its
    os.link(folder / "own.txt", tmp_path / "elsewhere.txt")
    assert read_text(folder, folder / "own.txt") == "x"
    assert read_text(folder, folder / "Procfile") == "web: python app.py\n"  # one link, root's: as before
